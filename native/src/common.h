// Shared pieces of the kernway addon: BpfError construction, errno names, libbpf's
// log capture, argument reading and the network-namespace guard.
//
// The addon is thin glue over libbpf. Arguments are validated in TypeScript before they
// reach C++ (native/*.ts); the checks here only keep a buggy caller from crashing the
// process and throw plain TypeErrors.
#pragma once

#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

struct btf;           // libbpf
struct bpf_map_info;  // linux/bpf.h

namespace kw {

// What went wrong, in plain C++ (built off the JS thread when needed).
struct ErrorInfo {
  std::string op;           // 'object.load', 'map.update', 'link.attach_tc', ...
  int err = 0;              // positive errno, or a libbpf errno (4000..)
  std::string detail;       // extra text after the errno's description
  bool detailOnly = false;  // the detail says it all: leave the errno's description out
  std::string object, program, map;
  std::string verifierLog;  // tail of the verifier log
};

// Per-env state (the addon is context-aware: one of these per env/worker).
struct AddonData {
  Napi::FunctionReference errorClass;  // native/errors.ts BpfError, set by setErrorClass()
};

// Builds a BpfError (or a plain Error with the same fields before setErrorClass()).
Napi::Value MakeError(Napi::Env env, const ErrorInfo& info);
[[noreturn]] void Throw(Napi::Env env, const ErrorInfo& info);
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail = "");
[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg);

// libbpf's private errnos (4000..) become the nearest standard errno.
int NormalizeErrno(int err);
std::string ErrnoName(int err);
std::string ErrnoText(int err);

// libbpf's print callback: silent unless KERNWAY_LIBBPF_DEBUG=1; remembers, per thread,
// the last warning lines and the verifier logs libbpf prints when a load fails.
void InstallLibbpfPrint();
void ClearCapture();
std::vector<std::string> CapturedWarnings();
struct ProgLog {
  std::string program;
  std::string log;  // tail only
};
std::vector<ProgLog> CapturedLoadLogs();
// The last few warning lines joined, for error details ("" when none).
std::string WarningSummary(size_t maxLines = 3);

// What a file descriptor refers to: "map", "prog", "link" or "other" (from /proc/self/fd).
std::string FdKind(int fd);

// The kernel's info on a map fd (throws BpfError `op` EBADF when the fd is not a map).
::bpf_map_info MapInfoOf(Napi::Env env, int fd, const char* op);

// Kernel values newer than the 6.1 UAPI headers (checked against the 6.18 kernel's enums).
constexpr int kTcxIngress = 46;  // BPF_TCX_INGRESS (6.6)
constexpr int kTcxEgress = 47;   // BPF_TCX_EGRESS (6.6)
constexpr int kENOTSUPP = 524;   // kernel-internal "not supported" that bpf(2) can return

// A zeroed libbpf options struct with its size set (LIBBPF_OPTS without C designated
// initializers, which C++ only accepts in declaration order).
template <typename T>
T Opts() {
  T o;
  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  return o;
}

// Verifier log tail kept in BpfError.verifierLog.
constexpr size_t kVerifierLogTail = 4096;

// Argument readers (TypeError naming the argument on a wrong type).
int ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgPresent(const Napi::CallbackInfo& info, size_t i);

// Enters the network namespace at `path` on the calling thread and returns to the
// original one when destroyed. An empty path does nothing. If returning fails the
// process aborts: a thread left in the wrong namespace is worse than a crash.
class NetnsGuard {
 public:
  explicit NetnsGuard(const std::string& path);
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  int error() const { return err_; }  // 0, or the errno of entering

 private:
  int orig_ = -1;
  int err_ = 0;
  bool entered_ = false;
};

// Module parts.
void InitObject(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitLinks(Napi::Env env, Napi::Object exports);
void InitProgs(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitBtf(Napi::Env env, Napi::Object exports);
void InitRingbuf(Napi::Env env, Napi::Object exports);

// A BTF type as a plain object for TypeScript (native/src/btf.cc, native/addon.d.ts RawBtfType).
Napi::Value DescribeBtfType(Napi::Env env, const ::btf* b, uint32_t id, int depth);

}  // namespace kw
