// Programs by fd (info, BPF_PROG_TEST_RUN) and the kernel feature probes.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common.h"

namespace kw {
namespace {

// progInfo(fd) -> { id, name, type, tag }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (FdKind(fd) != "prog") ThrowErrno(env, "prog.info", EBADF, "fd " + std::to_string(fd) + " is not a BPF program");
  bpf_prog_info pi = {};
  uint32_t len = sizeof pi;
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) != 0) ThrowErrno(env, "prog.info", errno);
  const char* type = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(pi.type));
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", type ? type : "unknown");
  o.Set("tag", tag);
  return o;
}

// progTestRun(fd, data, ctx | null, repeat, outSize) -> { retval, data, durationNs, ctx? }
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto data = ArgBuffer(info, 1, "data");
  bool hasCtx = ArgPresent(info, 2);
  Napi::Buffer<uint8_t> ctx;
  if (hasCtx) ctx = ArgBuffer(info, 2, "ctx");
  uint32_t repeat = ArgU32(info, 3, "repeat");
  uint32_t outSize = ArgU32(info, 4, "outSize");
  std::vector<uint8_t> out(outSize);
  std::vector<uint8_t> ctxOut(hasCtx ? ctx.Length() : 0);
  auto opts = Opts<struct bpf_test_run_opts>();
  opts.data_in = data.Data();
  opts.data_out = out.data();
  opts.data_size_in = static_cast<uint32_t>(data.Length());
  opts.data_size_out = outSize;
  opts.ctx_in = hasCtx ? ctx.Data() : nullptr;
  opts.ctx_size_in = hasCtx ? static_cast<uint32_t>(ctx.Length()) : 0;
  opts.ctx_out = hasCtx ? ctxOut.data() : nullptr;
  opts.ctx_size_out = hasCtx ? static_cast<uint32_t>(ctxOut.size()) : 0;
  opts.repeat = static_cast<int>(repeat);
  if (bpf_prog_test_run_opts(fd, &opts) != 0) ThrowErrno(env, "prog.test_run", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("retval", opts.retval);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min<size_t>(opts.data_size_out, out.size())));
  o.Set("durationNs", opts.duration);
  if (hasCtx) o.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctxOut.data(), std::min<size_t>(opts.ctx_size_out, ctxOut.size())));
  return o;
}

// ---------------------------------------------------------------------------------
// probes

#define KW_HELPER_NAME(x) #x
const char* const kHelperNames[] = {__BPF_FUNC_MAPPER(KW_HELPER_NAME)};
#undef KW_HELPER_NAME

int ProgTypeByName(const std::string& name) {
  for (int t = 0; t < 64; t++) {
    const char* s = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(t));
    if (s && name == s) return t;
  }
  return -1;
}

int MapTypeByName(const std::string& name) {
  for (int t = 0; t < 64; t++) {
    const char* s = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(t));
    if (s && name == s) return t;
  }
  return -1;
}

// A program of this type that returns `ret`; -errno on failure.
int LoadTrivial(bpf_prog_type type, int ret, bpf_attach_type expected = static_cast<bpf_attach_type>(0)) {
  struct bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, ret},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  auto opts = Opts<struct bpf_prog_load_opts>();
  opts.expected_attach_type = expected;
  int fd = bpf_prog_load(type, nullptr, "GPL", insns, 2, &opts);
  return fd < 0 ? -errno : fd;
}

Napi::Value ProbeResult(Napi::Env env, int r) {
  if (r < 0) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, r > 0);
}

// probeProgType(name) -> boolean | null (null: libbpf does not know the name)
Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int t = ProgTypeByName(ArgString(info, 0, "name"));
  if (t < 0) return env.Null();
  if (t == BPF_PROG_TYPE_CGROUP_SOCK_ADDR) {  // needs an expected attach type to load
    int fd = LoadTrivial(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, 1, BPF_CGROUP_INET4_CONNECT);
    if (fd >= 0) close(fd);
    return Napi::Boolean::New(env, fd >= 0);
  }
  return ProbeResult(env, libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(t), nullptr));
}

Napi::Value ProbeMapType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int t = MapTypeByName(ArgString(info, 0, "name"));
  if (t < 0) return env.Null();
  return ProbeResult(env, libbpf_probe_bpf_map_type(static_cast<bpf_map_type>(t), nullptr));
}

// probeHelper(progType, helper) -> boolean | null
Napi::Value ProbeHelper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int t = ProgTypeByName(ArgString(info, 0, "progType"));
  std::string helper = ArgString(info, 1, "helper");
  if (helper.rfind("bpf_", 0) == 0) helper.erase(0, 4);
  int id = -1;
  for (size_t i = 1; i < sizeof kHelperNames / sizeof kHelperNames[0]; i++) {
    if (helper == kHelperNames[i]) id = static_cast<int>(i);
  }
  if (t < 0 || id < 0) return env.Null();
  return ProbeResult(env, libbpf_probe_bpf_helper(static_cast<bpf_prog_type>(t), static_cast<bpf_func_id>(id), nullptr));
}

// probeTcx() -> boolean. A tcx attach to ifindex 0 fails with ENODEV on a kernel with tcx
// (the attach type is known, the device is not) and EINVAL without; nothing is attached.
Napi::Value ProbeTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = LoadTrivial(BPF_PROG_TYPE_SCHED_CLS, 0);
  if (prog < 0) return Napi::Boolean::New(env, false);
  int fd = bpf_link_create(prog, 0, static_cast<bpf_attach_type>(kTcxIngress), nullptr);
  int err = errno;
  if (fd >= 0) close(fd);
  close(prog);
  return Napi::Boolean::New(env, fd >= 0 || err == ENODEV);
}

// probeSockmapLink() -> boolean: links an sk_msg program to a scratch sockhash.
Napi::Value ProbeSockmapLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "kw_probe", 4, 4, 1, nullptr);
  if (map < 0) return Napi::Boolean::New(env, false);
  int prog = LoadTrivial(BPF_PROG_TYPE_SK_MSG, 1 /* SK_PASS */);
  bool ok = false;
  if (prog >= 0) {
    int fd = bpf_link_create(prog, map, BPF_SK_MSG_VERDICT, nullptr);
    ok = fd >= 0;
    if (fd >= 0) close(fd);
    close(prog);
  }
  close(map);
  return Napi::Boolean::New(env, ok);
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

}  // namespace

void InitProgs(Napi::Env env, Napi::Object exports) {
  exports.Set("progInfo", Napi::Function::New<ProgInfo>(env, "progInfo"));
  exports.Set("progTestRun", Napi::Function::New<ProgTestRun>(env, "progTestRun"));
  exports.Set("probeProgType", Napi::Function::New<ProbeProgType>(env, "probeProgType"));
  exports.Set("probeMapType", Napi::Function::New<ProbeMapType>(env, "probeMapType"));
  exports.Set("probeHelper", Napi::Function::New<ProbeHelper>(env, "probeHelper"));
  exports.Set("probeTcx", Napi::Function::New<ProbeTcx>(env, "probeTcx"));
  exports.Set("probeSockmapLink", Napi::Function::New<ProbeSockmapLink>(env, "probeSockmapLink"));
  exports.Set("libbpfVersion", Napi::Function::New<LibbpfVersion>(env, "libbpfVersion"));
}

}  // namespace kw
