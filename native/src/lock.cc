// Advisory locks (flock(2)) on a file descriptor the caller opened: the agent holds one on
// its bpffs folder and one on its cgroup for its whole life. The kernel releases them when
// the descriptor closes, so a crashed agent never leaves a stale lock behind.
#include <sys/file.h>
#include <sys/socket.h>

#include <cerrno>

#include "common.h"

namespace kw {
namespace {

// flockTry(fd, exclusive): true when taken now, false when another open file holds it.
Napi::Value FlockTry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  bool exclusive = info.Length() < 2 || info[1].ToBoolean().Value();
  for (;;) {
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "flock", errno);
  }
}

// flockRelease(fd): drops the lock (closing the descriptor does the same).
void FlockRelease(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  if (flock(fd, LOCK_UN) != 0) ThrowErrno(info.Env(), "flock", errno);
}

// peerCred(fd): SO_PEERCRED of a connected Unix socket: the pid, uid and gid of the process
// that connected (as of connect(), kept by the kernel). The agent's feed checks who asks.
Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) ThrowErrno(env, "getsockopt(SO_PEERCRED)", errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("flockTry", Napi::Function::New<FlockTry>(env, "flockTry"));
  exports.Set("flockRelease", Napi::Function::New<FlockRelease>(env, "flockRelease"));
  exports.Set("peerCred", Napi::Function::New<PeerCred>(env, "peerCred"));
}

}  // namespace kw
