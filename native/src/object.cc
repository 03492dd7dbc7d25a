// ObjectHandle: one libbpf bpf_object. Opened synchronously (ELF parsing), tuned
// (rodata, max_entries) before load, loaded on a worker thread (the verifier can take
// seconds), then asked for its programs' and maps' fds.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common.h"

namespace kw {
namespace {

enum class State { kOpen, kLoading, kLoaded, kFailed, kClosed };

const char* StateName(State s) {
  switch (s) {
    case State::kOpen: return "open (not loaded)";
    case State::kLoading: return "loading";
    case State::kLoaded: return "loaded";
    case State::kFailed: return "failed to load";
    case State::kClosed: return "closed";
  }
  return "?";
}

using NamePath = std::pair<std::string, std::string>;

std::vector<NamePath> ReadPairs(const Napi::CallbackInfo& info, size_t i, const char* name) {
  std::vector<NamePath> out;
  if (!ArgPresent(info, i)) return out;
  if (!info[i].IsArray()) ThrowType(info.Env(), std::string(name) + " must be an array of [name, path]");
  Napi::Array a = info[i].As<Napi::Array>();
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a[k];
    if (!v.IsArray()) ThrowType(info.Env(), std::string(name) + " must be an array of [name, path]");
    Napi::Array p = v.As<Napi::Array>();
    Napi::Value n = p[0u], path = p[1u];
    if (!n.IsString() || !path.IsString()) ThrowType(info.Env(), std::string(name) + " must be an array of [name, path]");
    out.emplace_back(n.As<Napi::String>().Utf8Value(), path.As<Napi::String>().Utf8Value());
  }
  return out;
}

class ObjectHandle : public Napi::ObjectWrap<ObjectHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ObjectHandle",
                       {
                           InstanceAccessor<&ObjectHandle::Name>("name"),
                           InstanceAccessor<&ObjectHandle::StateGetter>("state"),
                           InstanceMethod<&ObjectHandle::RodataVars>("rodataVars"),
                           InstanceMethod<&ObjectHandle::SetRodata>("setRodata"),
                           InstanceMethod<&ObjectHandle::SetMaxEntries>("setMaxEntries"),
                           InstanceMethod<&ObjectHandle::Load>("load"),
                           InstanceMethod<&ObjectHandle::Programs>("programs"),
                           InstanceMethod<&ObjectHandle::Maps>("maps"),
                           InstanceMethod<&ObjectHandle::MapBtf>("mapBtf"),
                           InstanceMethod<&ObjectHandle::Close>("close"),
                       });
  }

  explicit ObjectHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ObjectHandle>(info) {
    path_ = ArgString(info, 0, "path");
    size_t slash = path_.rfind('/');
    name_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
    name_ = name_.substr(0, name_.find('.'));  // as libbpf names objects: "maps.bpf.o" -> "maps"
    ClearCapture();
    errno = 0;
    obj_ = bpf_object__open_file(path_.c_str(), nullptr);
    if (!obj_) {
      int err = errno ? errno : EINVAL;
      ErrorInfo e;
      e.op = "object.open";
      e.err = err;
      e.object = name_;
      e.detail = path_;
      std::string w = WarningSummary(2);
      if (!w.empty()) e.detail += " (" + w + ")";
      Throw(info.Env(), e);
    }
    name_ = bpf_object__name(obj_);
  }

  ~ObjectHandle() override {
    // A handle being loaded is kept alive by its worker, so obj_ is never in use here.
    if (obj_) bpf_object__close(obj_);
  }

  bpf_object* obj() { return obj_; }
  const std::string& name() const { return name_; }
  void Finish(bool ok) {
    state_ = ok ? State::kLoaded : State::kFailed;
    if (closeAfterLoad_) DoClose();
  }

 private:
  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value StateGetter(const Napi::CallbackInfo& info) {
    static const char* names[] = {"open", "loading", "loaded", "failed", "closed"};
    return Napi::String::New(info.Env(), names[static_cast<int>(state_)]);
  }

  void Require(Napi::Env env, const char* op, State want) {
    if (state_ == want) return;
    ErrorInfo e;
    e.op = op;
    e.err = state_ == State::kClosed ? EBADF : (state_ == State::kLoading ? EBUSY : EINVAL);
    e.object = name_;
    e.detail = std::string("object is ") + StateName(state_) + ", needs to be " + StateName(want);
    Throw(env, e);
  }

  bpf_map* FindMap(Napi::Env env, const char* op, const std::string& name) {
    bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
    if (!m) {
      ErrorInfo e;
      e.op = op;
      e.err = ENOENT;
      e.object = name_;
      e.map = name;
      e.detail = "no map named '" + name + "' in " + name_;
      Throw(env, e);
    }
    return m;
  }

  // The .rodata map and its BTF section: the `const volatile` globals.
  bpf_map* RodataMap() {
    bpf_map* m;
    bpf_object__for_each_map(m, obj_) {
      const char* n = bpf_map__name(m);
      size_t len = strlen(n);
      if (bpf_map__is_internal(m) && len >= 7 && strcmp(n + len - 7, ".rodata") == 0) return m;
    }
    return nullptr;
  }

  // [{ name, offset, size, kind: 'int' | 'uint' | 'bool' | 'bytes' }]
  Napi::Value RodataVars(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (state_ == State::kClosed) Require(env, "object.rodata", State::kOpen);
    const btf* b = bpf_object__btf(obj_);
    if (!b || !RodataMap()) return out;
    int id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
    if (id < 0) return out;
    const btf_type* sec = btf__type_by_id(b, id);
    const btf_var_secinfo* vs = btf_var_secinfos(sec);
    uint32_t n = 0;
    for (uint16_t i = 0; i < btf_vlen(sec); i++, vs++) {
      const btf_type* var = btf__type_by_id(b, vs->type);
      if (!var || !btf_is_var(var)) continue;
      const char* kind = "bytes";
      int rid = btf__resolve_type(b, var->type);
      const btf_type* t = rid >= 0 ? btf__type_by_id(b, rid) : nullptr;
      if (t && btf_is_int(t)) {
        uint8_t enc = btf_int_encoding(t);
        kind = (enc & BTF_INT_BOOL) ? "bool" : (enc & BTF_INT_SIGNED) ? "int" : "uint";
      } else if (t && btf_is_enum(t)) {
        kind = "uint";
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", btf__name_by_offset(b, var->name_off));
      o.Set("offset", vs->offset);
      o.Set("size", vs->size);
      o.Set("kind", kind);
      out.Set(n++, o);
    }
    return out;
  }

  // setRodata(offset, bytes): patches the .rodata initial image before load.
  void SetRodata(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t offset = ArgU32(info, 0, "offset");
    Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "value");
    Require(env, "object.set_rodata", State::kOpen);
    bpf_map* m = RodataMap();
    if (!m) ThrowErrno(env, "object.set_rodata", ENOENT, name_ + " has no .rodata section");
    size_t size = 0;
    const void* cur = bpf_map__initial_value(m, &size);
    if (!cur || offset + data.Length() > size) ThrowErrno(env, "object.set_rodata", ERANGE, "write beyond .rodata");
    std::vector<uint8_t> image(static_cast<const uint8_t*>(cur), static_cast<const uint8_t*>(cur) + size);
    memcpy(image.data() + offset, data.Data(), data.Length());
    int err = bpf_map__set_initial_value(m, image.data(), image.size());
    if (err) ThrowErrno(env, "object.set_rodata", -err);
  }

  void SetMaxEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string map = ArgString(info, 0, "map");
    uint32_t n = ArgU32(info, 1, "maxEntries");
    Require(env, "object.set_max_entries", State::kOpen);
    bpf_map* m = FindMap(env, "object.set_max_entries", map);
    int err = bpf_map__set_max_entries(m, n);
    if (err) {
      ErrorInfo e;
      e.op = "object.set_max_entries";
      e.err = -err;
      e.object = name_;
      e.map = map;
      Throw(env, e);
    }
  }

  // load(reuse: [name, path][], pin: [name, path][]) -> Promise<{ reused, pinned }>
  Napi::Value Load(const Napi::CallbackInfo& info);

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_ == State::kClosed) Require(env, "object.programs", State::kOpen);
    Napi::Array out = Napi::Array::New(env);
    bpf_program* p;
    uint32_t n = 0;
    bpf_object__for_each_program(p, obj_) {
      Napi::Object o = Napi::Object::New(env);
      const char* type = libbpf_bpf_prog_type_str(bpf_program__type(p));
      const char* at = libbpf_bpf_attach_type_str(bpf_program__expected_attach_type(p));
      int fd = state_ == State::kLoaded ? bpf_program__fd(p) : -1;
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      o.Set("type", type ? type : "unknown");
      o.Set("attachType", at ? at : "");
      o.Set("fd", fd < 0 ? -1 : fd);
      out.Set(n++, o);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_ == State::kClosed) Require(env, "object.maps", State::kOpen);
    Napi::Array out = Napi::Array::New(env);
    bpf_map* m;
    uint32_t n = 0;
    bpf_object__for_each_map(m, obj_) {
      Napi::Object o = Napi::Object::New(env);
      const char* type = libbpf_bpf_map_type_str(bpf_map__type(m));
      int fd = state_ == State::kLoaded ? bpf_map__fd(m) : -1;
      o.Set("name", bpf_map__name(m));
      o.Set("type", type ? type : "unknown");
      o.Set("keySize", bpf_map__key_size(m));
      o.Set("valueSize", bpf_map__value_size(m));
      o.Set("maxEntries", bpf_map__max_entries(m));
      o.Set("internal", bpf_map__is_internal(m));
      o.Set("fd", fd < 0 ? -1 : fd);
      out.Set(n++, o);
    }
    return out;
  }

  // mapBtf(name) -> { key?, value? }: the map's key and value types in the object's BTF
  // (available as soon as the object is open: checks need no kernel).
  Napi::Value MapBtf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = ArgString(info, 0, "map");
    if (state_ == State::kClosed) Require(env, "object.map_btf", State::kOpen);
    bpf_map* m = FindMap(env, "object.map_btf", name);
    Napi::Object out = Napi::Object::New(env);
    const btf* b = bpf_object__btf(obj_);
    if (!b) return out;
    if (bpf_map__btf_key_type_id(m)) out.Set("key", DescribeBtfType(env, b, bpf_map__btf_key_type_id(m), 0));
    if (bpf_map__btf_value_type_id(m)) out.Set("value", DescribeBtfType(env, b, bpf_map__btf_value_type_id(m), 0));
    return out;
  }

  void Close(const Napi::CallbackInfo&) {
    if (state_ == State::kLoading) {
      closeAfterLoad_ = true;  // the worker owns obj_ until it finishes
      return;
    }
    DoClose();
  }

  void DoClose() {
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
    state_ = State::kClosed;
  }

  bpf_object* obj_ = nullptr;
  std::string path_, name_;
  State state_ = State::kOpen;
  bool closeAfterLoad_ = false;
  friend class LoadWorker;
};

// Runs bpf_object__load() off the JS thread. Everything it needs was converted to plain
// C++ before it was queued; Execute() never touches JS.
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, ObjectHandle* h, Napi::Object self, std::vector<NamePath> reuse,
             std::vector<NamePath> pin)
      : Napi::AsyncWorker(env, "kernway.object.load"),
        deferred_(Napi::Promise::Deferred::New(env)),
        handle_(h),
        obj_(h->obj()),
        reuse_(std::move(reuse)),
        pin_(std::move(pin)) {
    err_.object = h->name();
    self_ = Napi::Persistent(self);  // keeps the handle alive while loading
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    ClearCapture();
    for (const auto& [name, path] : reuse_) {
      if (!Reuse(name, path)) return Fail();
    }
    int err = bpf_object__load(obj_);
    if (err) {
      err_.op = "object.load";
      err_.err = -err;
      // Which program failed, and its verifier log (libbpf retried it with log level 1).
      for (const ProgLog& pl : CapturedLoadLogs()) {
        err_.program = pl.program;
        err_.verifierLog = pl.log;
      }
      if (err_.program.empty()) {  // name the program or map libbpf complained about last
        auto warnings = CapturedWarnings();
        for (auto w = warnings.rbegin(); w != warnings.rend() && err_.program.empty() && err_.map.empty(); ++w) {
          err_.program = Quoted(*w, "prog '");
          if (err_.program.empty()) err_.map = Quoted(*w, "map '");
        }
      }
      if (!err_.verifierLog.empty()) {
        err_.detail = "the verifier rejected program '" + err_.program + "': " + LastLines(err_.verifierLog, 3) +
                      " (full log tail in verifierLog)";
        err_.detailOnly = true;
      } else {
        err_.detail = WarningSummary(3);
      }
      return Fail();
    }
    for (const auto& [name, path] : pin_) {
      if (IsReused(name)) continue;
      bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
      int e = m ? bpf_map__pin(m, path.c_str()) : -ENOENT;
      if (e) {
        err_.op = "map.pin";
        err_.err = -e;
        err_.map = name;
        err_.detail = path;
        return Fail();
      }
      pinned_.push_back(name);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    handle_->Finish(true);
    Napi::Object r = Napi::Object::New(env);
    Napi::Array reused = Napi::Array::New(env), pinned = Napi::Array::New(env);
    for (uint32_t i = 0; i < reused_.size(); i++) reused.Set(i, reused_[i]);
    for (uint32_t i = 0; i < pinned_.size(); i++) pinned.Set(i, pinned_[i]);
    r.Set("reused", reused);
    r.Set("pinned", pinned);
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error&) override {
    Napi::Env env = Env();
    handle_->Finish(false);
    deferred_.Reject(MakeError(env, err_));
  }

 private:
  void Fail() { SetError(err_.op); }

  // The name in `prefix<name>'` within a libbpf message, or "".
  static std::string Quoted(const std::string& w, const char* prefix) {
    size_t p = w.find(prefix);
    if (p == std::string::npos) return "";
    p += strlen(prefix);
    size_t q = w.find('\'', p);
    return q == std::string::npos ? "" : w.substr(p, q - p);
  }

  bool IsReused(const std::string& name) const {
    for (const auto& r : reused_)
      if (r == name) return true;
    return false;
  }

  // The last `n` lines of a verifier log, without its statistics lines, on one line.
  static std::string LastLines(const std::string& s, size_t n) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < s.size()) {
      size_t nl = s.find('\n', start);
      std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      start = nl == std::string::npos ? s.size() : nl + 1;
      if (line.empty() || line.rfind("processed ", 0) == 0 || line.rfind("verification time", 0) == 0 ||
          line.rfind("stack depth", 0) == 0)
        continue;
      lines.push_back(line);
    }
    std::string out;
    for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); i++) {
      if (!out.empty()) out += " | ";
      out += lines[i];
    }
    return out;
  }

  // Reuses the map pinned at `path` if there is one and it matches the object's map.
  bool Reuse(const std::string& name, const std::string& path) {
    err_.map = name;
    bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
    if (!m) {
      err_.op = "map.reuse";
      err_.err = ENOENT;
      err_.detail = "no map named '" + name + "' in " + err_.object;
      return false;
    }
    if (access(path.c_str(), F_OK) != 0) {
      err_.map.clear();
      return true;  // nothing pinned yet: the load creates it
    }
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) {
      err_.op = "map.reuse";
      err_.err = errno;
      err_.detail = path;
      return false;
    }
    std::string why;
    if (FdKind(fd) != "map") {
      why = path + " is a pinned " + FdKind(fd) + ", not a map";
    } else {
      bpf_map_info mi = {};
      uint32_t len = sizeof mi;
      if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) {
        why = std::string("cannot read the pinned map's info: ") + strerror(errno);
      } else {
        auto differ = [&](const char* what, uint64_t pinned, uint64_t want) {
          if (pinned != want && why.empty())
            why = "the map pinned at " + path + " has " + what + " " + std::to_string(pinned) + ", the object wants " +
                  std::to_string(want);
        };
        differ("type", mi.type, bpf_map__type(m));
        differ("key size", mi.key_size, bpf_map__key_size(m));
        differ("value size", mi.value_size, bpf_map__value_size(m));
        differ("max entries", mi.max_entries, bpf_map__max_entries(m));
        differ("flags", mi.map_flags, bpf_map__map_flags(m));
      }
    }
    if (!why.empty()) {
      close(fd);
      err_.op = "map.reuse";
      err_.err = EINVAL;
      err_.detail = why;
      return false;
    }
    int e = bpf_map__reuse_fd(m, fd);
    close(fd);
    if (e) {
      err_.op = "map.reuse";
      err_.err = -e;
      err_.detail = path;
      return false;
    }
    reused_.push_back(name);
    err_.map.clear();
    return true;
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference self_;
  ObjectHandle* handle_;
  bpf_object* obj_;
  std::vector<NamePath> reuse_, pin_;
  std::vector<std::string> reused_, pinned_;
  ErrorInfo err_;
};

Napi::Value ObjectHandle::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto reuse = ReadPairs(info, 0, "reuse");
  auto pin = ReadPairs(info, 1, "pin");
  Require(env, "object.load", State::kOpen);
  state_ = State::kLoading;
  auto* w = new LoadWorker(env, this, info.This().As<Napi::Object>(), std::move(reuse), std::move(pin));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitObject(Napi::Env env, Napi::Object exports) { exports.Set("ObjectHandle", ObjectHandle::Define(env)); }

}  // namespace kw
