// Attaching programs: bpf_links wherever the kernel has them (cgroup, tcx, sockmap), the
// older attach APIs otherwise (clsact through netlink, BPF_PROG_ATTACH on a sockmap).
// native/link.ts keeps what is needed to detach each kind.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.h"

namespace kw {
namespace {

const char* LinkTypeName(uint32_t t) {
  const char* s = libbpf_bpf_link_type_str(static_cast<bpf_link_type>(t));
  if (s) return s;
  switch (t) {  // newer than libbpf 1.1
    case 10: return "netfilter";
    case 11: return "tcx";
    case 12: return "uprobe_multi";
    case 13: return "netkit";
    case 14: return "sockmap";
    default: return "unknown";
  }
}

// Attach types by libbpf's names ("cgroup_inet4_connect", "sk_msg_verdict", ...).
int AttachType(Napi::Env env, const std::string& name) {
  if (name == "tcx_ingress") return kTcxIngress;
  if (name == "tcx_egress") return kTcxEgress;
  for (int t = 0; t < 64; t++) {
    const char* s = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(t));
    if (s && name == s) return t;
  }
  ThrowType(env, "unknown attach type '" + name + "'");
}

int Dup(Napi::Env env, int fd, const char* op) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) ThrowErrno(env, op, errno);
  return d;
}

// Opens a cgroup v2 directory (and only that).
int OpenCgroup(Napi::Env env, const std::string& path, const char* op) {
  int cg = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) ThrowErrno(env, op, errno, path);
  struct statfs sf;
  if (fstatfs(cg, &sf) != 0 || sf.f_type != CGROUP2_SUPER_MAGIC) {
    close(cg);
    ThrowErrno(env, op, ENOTDIR, path + " is not a cgroup v2 directory");
  }
  return cg;
}

// cgroupAttach(progFd, cgroupPath, attachType) -> link fd
Napi::Value CgroupAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  std::string path = ArgString(info, 1, "cgroupPath");
  int type = AttachType(env, ArgString(info, 2, "attachType"));
  int cg = OpenCgroup(env, path, "link.attach_cgroup");
  int fd = bpf_link_create(prog, cg, static_cast<bpf_attach_type>(type), nullptr);
  int err = errno;
  close(cg);
  if (fd < 0) ThrowErrno(env, "link.attach_cgroup", err, path);
  return Napi::Number::New(env, fd);
}

// rawTracepointAttach(progFd, tracepoint) -> link fd: a raw tracepoint program on a
// kernel tracepoint ("sock_recv_length"), machine-wide; "" for a tp_btf program.
Napi::Value RawTracepointAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  std::string tp = ArgString(info, 1, "tracepoint");
  // "" for a BTF program (tp_btf): its tracepoint was given at load.
  int fd = bpf_raw_tracepoint_open(tp.empty() ? nullptr : tp.c_str(), prog);
  if (fd < 0) ThrowErrno(env, "link.attach_raw_tracepoint", errno, tp);
  return Napi::Number::New(env, fd);
}

// skMsgAttach(progFd, mapFd, mode: 'auto' | 'link' | 'prog-attach')
//   -> { kind: 'link', fd } | { kind: 'prog-attach', progFd, targetFd, attachType }
// Sockmap links need kernel 6.10; before that the program is attached to the map.
Napi::Value SkMsgAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  int map = ArgInt(info, 1, "mapFd");
  std::string mode = ArgString(info, 2, "mode");
  Napi::Object o = Napi::Object::New(env);
  if (mode != "prog-attach") {
    int fd = bpf_link_create(prog, map, BPF_SK_MSG_VERDICT, nullptr);
    if (fd >= 0) {
      o.Set("kind", "link");
      o.Set("fd", fd);
      return o;
    }
    int err = errno;
    if (mode == "link" || !(err == EINVAL || err == EOPNOTSUPP || err == kENOTSUPP))
      ThrowErrno(env, "link.attach_sk_msg", err);
  }
  if (bpf_prog_attach(prog, map, BPF_SK_MSG_VERDICT, 0) != 0) ThrowErrno(env, "link.attach_sk_msg", errno);
  o.Set("kind", "prog-attach");
  o.Set("progFd", Dup(env, prog, "link.attach_sk_msg"));
  o.Set("targetFd", Dup(env, map, "link.attach_sk_msg"));
  o.Set("attachType", "sk_msg_verdict");
  return o;
}

// progAttach(progFd, targetFd, attachType): BPF_PROG_ATTACH (replaces a sockmap's program).
void ProgAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  int target = ArgInt(info, 1, "targetFd");
  int type = AttachType(env, ArgString(info, 2, "attachType"));
  if (bpf_prog_attach(prog, target, static_cast<bpf_attach_type>(type), 0) != 0)
    ThrowErrno(env, "link.prog_attach", errno);
}

// progDetach(progFd, targetFd, attachType)
void ProgDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  int target = ArgInt(info, 1, "targetFd");
  int type = AttachType(env, ArgString(info, 2, "attachType"));
  if (bpf_prog_detach2(prog, target, static_cast<bpf_attach_type>(type)) != 0)
    ThrowErrno(env, "link.detach", errno);
}

// progQuery(target: fd | cgroup path, attachType) -> program ids attached there
Napi::Value ProgQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = AttachType(env, ArgString(info, 1, "attachType"));
  int target, owned = -1;
  if (info.Length() > 0 && info[0].IsString()) {
    owned = target = OpenCgroup(env, info[0].As<Napi::String>().Utf8Value(), "prog.query");
  } else {
    target = ArgInt(info, 0, "target");
  }
  uint32_t ids[64];
  auto opts = Opts<struct bpf_prog_query_opts>();
  opts.prog_ids = ids;
  opts.prog_cnt = 64;
  int r = bpf_prog_query_opts(target, static_cast<bpf_attach_type>(type), &opts);
  int err = errno;
  if (owned >= 0) close(owned);
  if (r != 0) ThrowErrno(env, "prog.query", err);
  Napi::Array out = Napi::Array::New(env, opts.prog_cnt);
  for (uint32_t i = 0; i < opts.prog_cnt; i++) out.Set(i, ids[i]);
  return out;
}

// ---------------------------------------------------------------------------------
// tc

// Resolves an interface (name or index) in the current network namespace.
int ResolveIfindex(Napi::Env env, const Napi::Value& iface, const char* op) {
  if (iface.IsNumber()) {
    int idx = iface.As<Napi::Number>().Int32Value();
    char name[IF_NAMESIZE];
    if (idx <= 0 || !if_indextoname(static_cast<unsigned>(idx), name))
      ThrowErrno(env, op, ENODEV, "no interface with index " + std::to_string(idx));
    return idx;
  }
  if (!iface.IsString()) ThrowType(env, "iface must be a string or a number");
  std::string name = iface.As<Napi::String>().Utf8Value();
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) ThrowErrno(env, op, ENODEV, "no interface named '" + name + "'");
  return static_cast<int>(idx);
}

void EnterNetns(Napi::Env env, const NetnsGuard& g, const std::string& netns, const char* op) {
  if (g.error()) ThrowErrno(env, op, g.error(), "cannot enter network namespace " + netns);
}

// tcAttach(progFd, iface, ingress, netnsPath, mode: 'auto' | 'tcx' | 'clsact')
//   -> { kind: 'link', fd, ifindex } | { kind: 'tc-clsact', ifindex, handle, priority }
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "link.attach_tc";
  int prog = ArgInt(info, 0, "progFd");
  if (info.Length() < 2) ThrowType(env, "iface is required");
  bool ingress = ArgBool(info, 2, "ingress");
  std::string netns = ArgString(info, 3, "netns");
  std::string mode = ArgString(info, 4, "mode");
  Napi::Object o = Napi::Object::New(env);
  NetnsGuard guard(netns);
  EnterNetns(env, guard, netns, op);
  int ifindex = ResolveIfindex(env, info[1], op);
  o.Set("ifindex", ifindex);
  if (mode != "clsact") {
    int fd = bpf_link_create(prog, ifindex, static_cast<bpf_attach_type>(ingress ? kTcxIngress : kTcxEgress), nullptr);
    if (fd >= 0) {
      o.Set("kind", "link");
      o.Set("fd", fd);
      return o;
    }
    int err = errno;
    if (mode == "tcx" || !(err == EINVAL || err == EOPNOTSUPP || err == kENOTSUPP)) ThrowErrno(env, op, err);
  }
  auto hook = Opts<struct bpf_tc_hook>();
  hook.ifindex = ifindex;
  hook.attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  int r = bpf_tc_hook_create(&hook);
  if (r && r != -EEXIST) ThrowErrno(env, op, -r, "creating the clsact qdisc");
  auto opts = Opts<struct bpf_tc_opts>();
  opts.prog_fd = prog;
  r = bpf_tc_attach(&hook, &opts);
  if (r) ThrowErrno(env, op, -r);
  o.Set("kind", "tc-clsact");
  o.Set("handle", opts.handle);
  o.Set("priority", opts.priority);
  return o;
}

struct ClsactRef {
  int ifindex;
  bool ingress;
  uint32_t handle, priority;
  std::string netns;
};

ClsactRef ReadClsact(const Napi::CallbackInfo& info, size_t first) {
  return {ArgInt(info, first, "ifindex"), ArgBool(info, first + 1, "ingress"), ArgU32(info, first + 2, "handle"),
          ArgU32(info, first + 3, "priority"), ArgString(info, first + 4, "netns")};
}

// tcDetach(ifindex, ingress, handle, priority, netns): removes one clsact filter.
void TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ClsactRef c = ReadClsact(info, 0);
  NetnsGuard guard(c.netns);
  EnterNetns(env, guard, c.netns, "link.detach");
  auto hook = Opts<struct bpf_tc_hook>();
  hook.ifindex = c.ifindex;
  hook.attach_point = c.ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  auto opts = Opts<struct bpf_tc_opts>();
  opts.handle = c.handle;
  opts.priority = c.priority;
  int r = bpf_tc_detach(&hook, &opts);
  if (r) ThrowErrno(env, "link.detach", -r);
}

// tcReplace(progFd, ifindex, ingress, handle, priority, netns): atomic program swap.
void TcReplace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = ArgInt(info, 0, "progFd");
  ClsactRef c = ReadClsact(info, 1);
  NetnsGuard guard(c.netns);
  EnterNetns(env, guard, c.netns, "link.update");
  auto hook = Opts<struct bpf_tc_hook>();
  hook.ifindex = c.ifindex;
  hook.attach_point = c.ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  auto opts = Opts<struct bpf_tc_opts>();
  opts.prog_fd = prog;
  opts.flags = BPF_TC_F_REPLACE;
  opts.handle = c.handle;
  opts.priority = c.priority;
  int r = bpf_tc_attach(&hook, &opts);
  if (r) ThrowErrno(env, "link.update", -r);
}

// tcQuery(ifindex, ingress, handle, priority, netns) -> program id, or 0 when nothing is there
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ClsactRef c = ReadClsact(info, 0);
  NetnsGuard guard(c.netns);
  EnterNetns(env, guard, c.netns, "link.query");
  auto hook = Opts<struct bpf_tc_hook>();
  hook.ifindex = c.ifindex;
  hook.attach_point = c.ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  auto opts = Opts<struct bpf_tc_opts>();
  opts.handle = c.handle;
  opts.priority = c.priority;
  int r = bpf_tc_query(&hook, &opts);
  if (r == -ENOENT || r == -EINVAL) return Napi::Number::New(env, 0);
  if (r) ThrowErrno(env, "link.query", -r);
  return Napi::Number::New(env, opts.prog_id);
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

// netnsCookie(netns) -> the cookie of a network namespace (a path such as
// /proc/PID/ns/net; '' for the caller's), as bpf_get_netns_cookie() sees it: a socket
// made there and getsockopt(SO_NETNS_COOKIE) (Linux 5.14+).
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns = ArgString(info, 0, "netns");
  uint64_t cookie = 0;
  {
    NetnsGuard guard(netns);
    EnterNetns(env, guard, netns, "netns.cookie");
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) ThrowErrno(env, "netns.cookie", errno, "socket()");
    socklen_t len = sizeof(cookie);
    int r = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
    int err = errno;
    close(fd);
    if (r != 0) ThrowErrno(env, "netns.cookie", err, "getsockopt(SO_NETNS_COOKIE) in " + netns);
  }
  return Napi::BigInt::New(env, cookie);
}

// tcxQuery(iface, ingress, netns) -> ids of the programs on the interface's tcx hook
Napi::Value TcxQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) ThrowType(env, "iface is required");
  bool ingress = ArgBool(info, 1, "ingress");
  std::string netns = ArgString(info, 2, "netns");
  NetnsGuard guard(netns);
  EnterNetns(env, guard, netns, "link.query");
  int ifindex = ResolveIfindex(env, info[0], "link.query");
  uint32_t ids[64];
  auto opts = Opts<struct bpf_prog_query_opts>();
  opts.prog_ids = ids;
  opts.prog_cnt = 64;
  if (bpf_prog_query_opts(ifindex, static_cast<bpf_attach_type>(ingress ? kTcxIngress : kTcxEgress), &opts) != 0)
    ThrowErrno(env, "link.query", errno);
  Napi::Array out = Napi::Array::New(env, opts.prog_cnt);
  for (uint32_t i = 0; i < opts.prog_cnt; i++) out.Set(i, ids[i]);
  return out;
}

// ---------------------------------------------------------------------------------
// links

void LinkDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (bpf_link_detach(ArgInt(info, 0, "fd")) != 0) ThrowErrno(env, "link.detach", errno);
}

// linkUpdate(fd, newProgFd): atomic program replacement.
void LinkUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int prog = ArgInt(info, 1, "progFd");
  if (bpf_link_update(fd, prog, nullptr) != 0) ThrowErrno(env, "link.update", errno);
}

// linkInfo(fd) -> { id, type, progId, ifindex?, cgroupId?, mapId? }
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (FdKind(fd) != "link") ThrowErrno(env, "link.info", EBADF, "fd " + std::to_string(fd) + " is not a BPF link");
  bpf_link_info li = {};
  uint32_t len = sizeof li;
  if (bpf_obj_get_info_by_fd(fd, &li, &len) != 0) ThrowErrno(env, "link.info", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", LinkTypeName(li.type));
  o.Set("progId", li.prog_id);
  // The union after prog_id: tcx/netkit { ifindex, attach_type }, sockmap { map_id, attach_type }.
  uint32_t u0, u1;
  memcpy(&u0, &li.cgroup, sizeof u0);
  memcpy(&u1, reinterpret_cast<const uint8_t*>(&li.cgroup) + 4, sizeof u1);
  switch (li.type) {
    case BPF_LINK_TYPE_CGROUP:
      o.Set("cgroupId", Napi::Number::New(env, static_cast<double>(li.cgroup.cgroup_id)));
      break;
    case 11:  // BPF_LINK_TYPE_TCX
    case 13:  // BPF_LINK_TYPE_NETKIT
      o.Set("ifindex", u0);
      break;
    case 14:  // BPF_LINK_TYPE_SOCKMAP
      o.Set("mapId", u0);
      break;
    default:
      break;
  }
  (void)u1;
  return o;
}

}  // namespace

void InitLinks(Napi::Env env, Napi::Object exports) {
  exports.Set("cgroupAttach", Napi::Function::New<CgroupAttach>(env, "cgroupAttach"));
  exports.Set("skMsgAttach", Napi::Function::New<SkMsgAttach>(env, "skMsgAttach"));
  exports.Set("rawTracepointAttach", Napi::Function::New<RawTracepointAttach>(env, "rawTracepointAttach"));
  exports.Set("progAttach", Napi::Function::New<ProgAttach>(env, "progAttach"));
  exports.Set("progDetach", Napi::Function::New<ProgDetach>(env, "progDetach"));
  exports.Set("progQuery", Napi::Function::New<ProgQuery>(env, "progQuery"));
  exports.Set("tcAttach", Napi::Function::New<TcAttach>(env, "tcAttach"));
  exports.Set("tcDetach", Napi::Function::New<TcDetach>(env, "tcDetach"));
  exports.Set("tcReplace", Napi::Function::New<TcReplace>(env, "tcReplace"));
  exports.Set("tcQuery", Napi::Function::New<TcQuery>(env, "tcQuery"));
  exports.Set("tcxQuery", Napi::Function::New<TcxQuery>(env, "tcxQuery"));
  exports.Set("netnsCookie", Napi::Function::New<NetnsCookie>(env, "netnsCookie"));
  exports.Set("linkDetach", Napi::Function::New<LinkDetach>(env, "linkDetach"));
  exports.Set("linkUpdate", Napi::Function::New<LinkUpdate>(env, "linkUpdate"));
  exports.Set("linkInfo", Napi::Function::New<LinkInfo>(env, "linkInfo"));
}

}  // namespace kw
