// BTF type descriptions for TypeScript: the layout of a map's key and value types as the
// compiled object (or a pinned map's kernel BTF) declares them, so the agent can check
// the structs it encodes field by field (offset and size) and convert entries between
// two layouts by field name (agent/datapath/loader.ts).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "common.h"

namespace kw {

namespace {

constexpr int kMaxBtfDepth = 8;

// Skips typedefs and const/volatile/restrict qualifiers (keeping the first name met, so
// a `typedef struct {..} kw_x` keeps its typedef's name).
uint32_t SkipModifiers(const btf* b, uint32_t id, std::string* name) {
  for (int i = 0; i < 32 && id != 0; i++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!t) return 0;
    if (!btf_is_typedef(t) && !btf_is_mod(t)) return id;
    if (name && name->empty() && btf_is_typedef(t)) *name = btf__name_by_offset(b, t->name_off);
    id = t->type;
  }
  return id;
}

}  // namespace

// { kind, name, size, encoding?, members?, elem?, len? }; see native/addon.d.ts RawBtfType.
Napi::Value DescribeBtfType(Napi::Env env, const btf* b, uint32_t id, int depth) {
  Napi::Object o = Napi::Object::New(env);
  std::string alias;
  id = SkipModifiers(b, id, &alias);
  const btf_type* t = id ? btf__type_by_id(b, id) : nullptr;
  if (!t) {
    o.Set("kind", "void");
    o.Set("name", "");
    o.Set("size", 0);
    return o;
  }
  const char* own = btf__name_by_offset(b, t->name_off);
  std::string name = own && *own ? own : alias;
  __s64 size = btf__resolve_size(b, id);
  o.Set("name", name);
  o.Set("size", size < 0 ? 0 : static_cast<double>(size));
  if (btf_is_int(t)) {
    uint8_t enc = btf_int_encoding(t);
    o.Set("kind", "int");
    o.Set("encoding", (enc & BTF_INT_BOOL) ? "bool" : (enc & BTF_INT_SIGNED) ? "signed" : "unsigned");
  } else if (btf_is_enum(t) || btf_kind(t) == 19 /* BTF_KIND_ENUM64 */) {
    o.Set("kind", "enum");
  } else if (btf_is_ptr(t)) {
    o.Set("kind", "ptr");
  } else if (btf_is_array(t)) {
    const struct btf_array* a = ::btf_array(t);
    o.Set("kind", "array");
    o.Set("len", a->nelems);
    if (depth < kMaxBtfDepth) o.Set("elem", DescribeBtfType(env, b, a->type, depth + 1));
  } else if (btf_is_struct(t) || btf_is_union(t)) {
    o.Set("kind", btf_is_struct(t) ? "struct" : "union");
    Napi::Array members = Napi::Array::New(env);
    const btf_member* m = btf_members(t);
    for (uint16_t i = 0; i < btf_vlen(t) && depth < kMaxBtfDepth; i++, m++) {
      Napi::Object mo = Napi::Object::New(env);
      uint32_t bitOff = btf_member_bit_offset(t, i);
      uint32_t bitSize = btf_member_bitfield_size(t, i);
      mo.Set("name", btf__name_by_offset(b, m->name_off));
      mo.Set("offset", bitOff / 8);
      if (bitSize != 0 || bitOff % 8 != 0) {
        mo.Set("bitOffset", bitOff);
        mo.Set("bitSize", bitSize);
      }
      mo.Set("type", DescribeBtfType(env, b, m->type, depth + 1));
      members.Set(i, mo);
    }
    o.Set("members", members);
  } else {
    o.Set("kind", "other");
  }
  return o;
}

namespace {

// mapBtf(fd) -> { key?, value? } from the kernel BTF a map was created with ({} if none).
Napi::Value MapBtf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map_info mi = MapInfoOf(env, ArgInt(info, 0, "fd"), "map.btf");
  Napi::Object out = Napi::Object::New(env);
  if (mi.btf_id == 0) return out;
  errno = 0;
  btf* b = btf__load_from_kernel_by_id(mi.btf_id);
  if (!b) ThrowErrno(env, "map.btf", errno ? errno : ENOENT, "cannot read the map's BTF (id " + std::to_string(mi.btf_id) + ")");
  if (mi.btf_key_type_id) out.Set("key", DescribeBtfType(env, b, mi.btf_key_type_id, 0));
  if (mi.btf_value_type_id) out.Set("value", DescribeBtfType(env, b, mi.btf_value_type_id, 0));
  btf__free(b);
  return out;
}

}  // namespace

void InitBtf(Napi::Env env, Napi::Object exports) {
  exports.Set("mapBtf", Napi::Function::New<MapBtf>(env, "mapBtf"));
}

}  // namespace kw
