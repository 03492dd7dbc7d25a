#include "common.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>

namespace kw {

// ---------------------------------------------------------------------------------
// errno names

int NormalizeErrno(int err) {
  if (err < 0) err = -err;
  switch (err) {
    case LIBBPF_ERRNO__LIBELF:
    case LIBBPF_ERRNO__FORMAT:
    case LIBBPF_ERRNO__ENDIAN:
    case LIBBPF_ERRNO__RELOC:
      return ENOEXEC;  // not a usable BPF ELF object
    case LIBBPF_ERRNO__VERIFY:
      return EACCES;
    case LIBBPF_ERRNO__PROG2BIG:
      return E2BIG;
    case LIBBPF_ERRNO__INTERNAL:
      return EFAULT;
    case LIBBPF_ERRNO__KVERSION:
    case LIBBPF_ERRNO__LOAD:
    case LIBBPF_ERRNO__KVER:
    case LIBBPF_ERRNO__PROGTYPE:
    case LIBBPF_ERRNO__WRNGPID:
    case LIBBPF_ERRNO__INVSEQ:
    case LIBBPF_ERRNO__NLPARSE:
      return EINVAL;
    default:
      return err;
  }
}

std::string ErrnoName(int err) {
  if (err < 0) err = -err;
  switch (err) {  // kernel-internal errnos that leak to user space from bpf(2)
    case 512: return "ERESTARTSYS";
    case 524: return "ENOTSUPP";
    default: break;
  }
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string ErrnoText(int err) {
  if (err < 0) err = -err;
  if (err == 524) return "Operation not supported by this kernel";
  if (err >= 4000 && err < 4100) {
    char buf[128];
    libbpf_strerror(-err, buf, sizeof buf);
    return buf;
  }
  return strerror(err);
}

// ---------------------------------------------------------------------------------
// BpfError

Napi::Value MakeError(Napi::Env env, const ErrorInfo& info) {
  int norm = NormalizeErrno(info.err);
  std::string text = ErrnoText(info.err);
  Napi::Object init = Napi::Object::New(env);
  init.Set("code", ErrnoName(norm));
  init.Set("errno", norm);
  init.Set("op", info.op);
  init.Set("detail", info.detail.empty() ? text : info.detailOnly ? info.detail : text + ": " + info.detail);
  if (!info.object.empty()) init.Set("object", info.object);
  if (!info.program.empty()) init.Set("program", info.program);
  if (!info.map.empty()) init.Set("map", info.map);
  if (!info.verifierLog.empty()) init.Set("verifierLog", info.verifierLog);
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data && !data->errorClass.IsEmpty()) return data->errorClass.New({init});
  // Before native/index.ts registered BpfError: a plain Error with the same fields.
  Napi::Error e = Napi::Error::New(env, info.op + ": " + init.Get("detail").As<Napi::String>().Utf8Value());
  Napi::Object obj = e.Value();
  for (const char* k : {"code", "errno", "op", "object", "program", "map", "verifierLog"}) {
    if (init.Has(k)) obj.Set(k, init.Get(k));
  }
  return obj;
}

void Throw(Napi::Env env, const ErrorInfo& info) { throw Napi::Error(env, MakeError(env, info)); }

void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  ErrorInfo info;
  info.op = op;
  info.err = err;
  info.detail = detail;
  Throw(env, info);
}

void ThrowType(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, "kernway addon: " + msg);
}

// ---------------------------------------------------------------------------------
// libbpf print capture

namespace {
constexpr size_t kMaxWarnings = 8;
thread_local std::deque<std::string> t_warnings;
thread_local std::vector<ProgLog> t_loadLogs;
bool g_debug = false;

std::string Tail(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t start = s.size() - n;
  size_t nl = s.find('\n', start);  // start on a line boundary when possible
  if (nl != std::string::npos && nl + 1 < s.size()) start = nl + 1;
  return "...\n" + s.substr(start);
}

// libbpf prints a failed program's log as
//   "libbpf: prog 'NAME': -- BEGIN PROG LOAD LOG --\n<log>-- END PROG LOAD LOG --\n"
bool TakeLoadLog(const std::string& line) {
  static const std::string kBegin = "': -- BEGIN PROG LOAD LOG --\n";
  static const std::string kEnd = "-- END PROG LOAD LOG --";
  size_t b = line.find(kBegin);
  if (b == std::string::npos) return false;
  size_t p = line.rfind("prog '", b);
  if (p == std::string::npos) return false;
  std::string name = line.substr(p + 6, b - (p + 6));
  size_t start = b + kBegin.size();
  size_t e = line.find(kEnd, start);
  std::string log = line.substr(start, e == std::string::npos ? std::string::npos : e - start);
  t_loadLogs.push_back({name, Tail(log, kVerifierLogTail)});
  return true;
}

int PrintFn(enum libbpf_print_level level, const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string s(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(s.data(), s.size(), fmt, args);
  s.resize(static_cast<size_t>(n));
  if (g_debug) fputs(s.c_str(), stderr);
  if (level != LIBBPF_WARN) return 0;
  if (TakeLoadLog(s)) return 0;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.rfind("libbpf: ", 0) == 0) s.erase(0, 8);
  if (s.empty()) return 0;
  t_warnings.push_back(s.size() > 400 ? s.substr(0, 400) + "..." : s);
  if (t_warnings.size() > kMaxWarnings) t_warnings.pop_front();
  return 0;
}
}  // namespace

void InstallLibbpfPrint() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* d = getenv("KERNWAY_LIBBPF_DEBUG");
    g_debug = d && strcmp(d, "1") == 0;
    libbpf_set_print(PrintFn);
  });
}

void ClearCapture() {
  t_warnings.clear();
  t_loadLogs.clear();
}

std::vector<std::string> CapturedWarnings() { return {t_warnings.begin(), t_warnings.end()}; }

std::vector<ProgLog> CapturedLoadLogs() { return t_loadLogs; }

std::string WarningSummary(size_t maxLines) {
  std::string out;
  size_t from = t_warnings.size() > maxLines ? t_warnings.size() - maxLines : 0;
  for (size_t i = from; i < t_warnings.size(); i++) {
    if (!out.empty()) out += "; ";
    out += t_warnings[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------
// arguments

bool ArgPresent(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull();
}

int ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 4294967295.0) ThrowType(info.Env(), std::string(name) + " must be a 32-bit unsigned integer");
  return static_cast<uint32_t>(d);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBoolean()) ThrowType(info.Env(), std::string(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowType(info.Env(), std::string(name) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

std::string FdKind(int fd) {
  char path[64], target[128];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return "other";
  target[n] = '\0';
  if (strcmp(target, "anon_inode:bpf-map") == 0) return "map";
  if (strcmp(target, "anon_inode:bpf-prog") == 0) return "prog";
  if (strcmp(target, "anon_inode:bpf_link") == 0 || strcmp(target, "anon_inode:bpf-link") == 0) return "link";
  return "other";
}

// ---------------------------------------------------------------------------------
// network namespaces

NetnsGuard::NetnsGuard(const std::string& path) {
  if (path.empty()) return;
  orig_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig_ < 0) {
    err_ = errno;
    return;
  }
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    err_ = errno;
    return;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    err_ = errno;
    close(target);
    return;
  }
  close(target);
  entered_ = true;
}

NetnsGuard::~NetnsGuard() {
  if (entered_) {
    if (setns(orig_, CLONE_NEWNET) != 0 && setns(orig_, CLONE_NEWNET) != 0) {
      fprintf(stderr, "kernway addon: cannot return to the original network namespace (%s); aborting\n",
              strerror(errno));
      abort();
    }
  }
  if (orig_ >= 0) close(orig_);
}

bpf_map_info MapInfoOf(Napi::Env env, int fd, const char* op) {
  if (FdKind(fd) != "map") ThrowErrno(env, op, EBADF, "fd " + std::to_string(fd) + " is not a BPF map");
  bpf_map_info mi = {};
  uint32_t len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) ThrowErrno(env, op, errno);
  return mi;
}

}  // namespace kw
