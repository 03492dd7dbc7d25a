// Map operations by fd: lookup/update/delete, batch ops, iteration, info. Sizes are
// passed by the caller (native/map.ts reads them once from mapInfo) and every buffer is
// checked against them here, so the kernel never reads past a buffer.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common.h"

namespace kw {
namespace {

void CheckSize(Napi::Env env, const Napi::Buffer<uint8_t>& b, size_t want, const char* what) {
  if (b.Length() != want)
    ThrowType(env, std::string(what) + " is " + std::to_string(b.Length()) + " bytes, expected " + std::to_string(want));
}

// mapInfo(fd) -> { id, name, type, keySize, valueSize, maxEntries, flags }
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map_info mi = MapInfoOf(env, ArgInt(info, 0, "fd"), "map.info");
  const char* type = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(mi.type));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", type ? std::string(type) : "unknown(" + std::to_string(mi.type) + ")");
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

// mapLookup(fd, key, keySize, valueBytes) -> Buffer | undefined
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  uint32_t valueBytes = ArgU32(info, 3, "valueBytes");
  CheckSize(env, key, keySize, "key");
  auto value = Napi::Buffer<uint8_t>::New(env, valueBytes);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowErrno(env, "map.lookup", errno);
  }
  return value;
}

// mapLookupInto(fd, key, keySize, out, valueBytes) -> boolean: the value written into `out`
// (no Buffer made per lookup: a scrape reads 10,000 per-Service counters); false when absent.
Napi::Value MapLookupInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  auto out = ArgBuffer(info, 3, "out");
  uint32_t valueBytes = ArgU32(info, 4, "valueBytes");
  CheckSize(env, key, keySize, "key");
  CheckSize(env, out, valueBytes, "out");
  if (bpf_map_lookup_elem(fd, key.Data(), out.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "map.lookup", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapUpdate(fd, key, keySize, value, valueBytes, flags)
void MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  auto value = ArgBuffer(info, 3, "value");
  uint32_t valueBytes = ArgU32(info, 4, "valueBytes");
  uint32_t flags = ArgU32(info, 5, "flags");
  CheckSize(env, key, keySize, "key");
  CheckSize(env, value, valueBytes, "value");
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags) != 0) ThrowErrno(env, "map.update", errno);
}

// mapDelete(fd, key, keySize) -> boolean (false when absent)
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(env, key, ArgU32(info, 2, "keySize"), "key");
  if (bpf_map_delete_elem(fd, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "map.delete", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keySize) -> Buffer | undefined (undefined after the last key)
Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  const void* cur = nullptr;
  Napi::Buffer<uint8_t> key;
  if (ArgPresent(info, 1)) {
    key = ArgBuffer(info, 1, "key");
    CheckSize(env, key, keySize, "key");
    cur = key.Data();
  }
  auto next = Napi::Buffer<uint8_t>::New(env, keySize);
  if (bpf_map_get_next_key(fd, cur, next.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowErrno(env, "map.next_key", errno);
  }
  return next;
}

// mapBatchUpdate(fd, keys, keySize, values, valueBytes, count, flags) -> count
Napi::Value MapBatchUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto keys = ArgBuffer(info, 1, "keys");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  auto values = ArgBuffer(info, 3, "values");
  uint32_t valueBytes = ArgU32(info, 4, "valueBytes");
  uint32_t count = ArgU32(info, 5, "count");
  uint32_t flags = ArgU32(info, 6, "flags");
  CheckSize(env, keys, static_cast<size_t>(keySize) * count, "keys");
  CheckSize(env, values, static_cast<size_t>(valueBytes) * count, "values");
  if (count == 0) return Napi::Number::New(env, 0);
  auto opts = Opts<struct bpf_map_batch_opts>();
  opts.elem_flags = flags;
  uint32_t n = count;
  if (bpf_map_update_batch(fd, keys.Data(), values.Data(), &n, &opts) != 0) {
    int err = errno;
    ThrowErrno(env, "map.batch_update", err,
               "stopped after " + std::to_string(n) + " of " + std::to_string(count) + " entries");
  }
  return Napi::Number::New(env, n);
}

// mapBatchDelete(fd, keys, keySize, count) -> number deleted (absent keys are skipped)
Napi::Value MapBatchDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto keys = ArgBuffer(info, 1, "keys");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  uint32_t count = ArgU32(info, 3, "count");
  CheckSize(env, keys, static_cast<size_t>(keySize) * count, "keys");
  auto opts = Opts<struct bpf_map_batch_opts>();
  uint32_t done = 0, deleted = 0;
  while (done < count) {
    uint32_t n = count - done;
    if (bpf_map_delete_batch(fd, keys.Data() + static_cast<size_t>(done) * keySize, &n, &opts) == 0) {
      deleted += n;
      break;
    }
    int err = errno;
    if (err != ENOENT)
      ThrowErrno(env, "map.batch_delete", err,
                 "stopped after " + std::to_string(done + n) + " of " + std::to_string(count) + " keys");
    // The key at done + n is absent: skip it and go on.
    deleted += n;
    done += n + 1;
  }
  return Napi::Number::New(env, deleted);
}

// mapBatchLookup(fd, keySize, valueBytes, maxEntries) -> { keys, values, count }
// Whole map, in chunks; maps without batch support are walked with get_next_key.
Napi::Value MapBatchLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  uint32_t keySize = ArgU32(info, 1, "keySize");
  uint32_t valueBytes = ArgU32(info, 2, "valueBytes");
  uint32_t maxEntries = ArgU32(info, 3, "maxEntries");
  std::vector<uint8_t> keys, values;
  uint32_t total = 0;
  uint32_t chunk = std::max<uint32_t>(1, std::min<uint32_t>(maxEntries, 8192));
  std::vector<uint8_t> inBatch(std::max<uint32_t>(keySize, 8)), outBatch(inBatch.size());
  bool first = true, fallback = false;
  auto opts = Opts<struct bpf_map_batch_opts>();
  for (;;) {
    size_t kOff = keys.size(), vOff = values.size();
    keys.resize(kOff + static_cast<size_t>(chunk) * keySize);
    values.resize(vOff + static_cast<size_t>(chunk) * valueBytes);
    uint32_t n = chunk;
    int r = bpf_map_lookup_batch(fd, first ? nullptr : inBatch.data(), outBatch.data(), keys.data() + kOff,
                                 values.data() + vOff, &n, &opts);
    int err = r ? errno : 0;
    if (r != 0 && err != ENOENT) n = 0;
    keys.resize(kOff + static_cast<size_t>(n) * keySize);
    values.resize(vOff + static_cast<size_t>(n) * valueBytes);
    total += n;
    if (r == 0) {
      first = false;
      std::swap(inBatch, outBatch);
      continue;
    }
    if (err == ENOENT) break;
    if (err == ENOSPC && chunk < (1u << 20)) {  // a hash bucket holds more than a chunk
      chunk *= 2;
      continue;
    }
    if (first && (err == EINVAL || err == kENOTSUPP || err == EOPNOTSUPP)) {
      fallback = true;
      break;
    }
    ThrowErrno(env, "map.batch_lookup", err);
  }
  if (fallback) {
    keys.clear();
    values.clear();
    total = 0;
    std::vector<uint8_t> cur(keySize), next(keySize), val(valueBytes);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
      if (bpf_map_lookup_elem(fd, next.data(), val.data()) == 0) {
        keys.insert(keys.end(), next.begin(), next.end());
        values.insert(values.end(), val.begin(), val.end());
        total++;
      } else if (errno != ENOENT) {
        ThrowErrno(env, "map.batch_lookup", errno);
      }
      cur.swap(next);
      prev = cur.data();
    }
    if (errno != ENOENT) ThrowErrno(env, "map.batch_lookup", errno);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  o.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
  o.Set("count", total);
  return o;
}

// objPin(fd, path): pins a map, program or link.
void ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) != 0) ThrowErrno(env, "pin", errno, path);
}

// objGet(path) -> fd of the pinned object
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, "open_pinned", errno, path);
  return Napi::Number::New(env, fd);
}

Napi::Value FdKindJs(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), FdKind(ArgInt(info, 0, "fd")));
}

// closeFd(fd): closes a BPF fd (and refuses any other kind, which is not ours to close).
void CloseFd(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  if (fd < 0) return;
  if (FdKind(fd) == "other") ThrowErrno(info.Env(), "close", EBADF, "fd " + std::to_string(fd) + " is not a BPF object");
  close(fd);
}

// dupFd(fd) -> a new fd for the same BPF object (close-on-exec).
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (FdKind(fd) == "other") ThrowErrno(env, "dup", EBADF, "fd " + std::to_string(fd) + " is not a BPF object");
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) ThrowErrno(env, "dup", errno);
  return Napi::Number::New(env, d);
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "num_possible_cpus", -n);
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapInfo", Napi::Function::New<MapInfo>(env, "mapInfo"));
  exports.Set("mapLookup", Napi::Function::New<MapLookup>(env, "mapLookup"));
  exports.Set("mapLookupInto", Napi::Function::New<MapLookupInto>(env, "mapLookupInto"));
  exports.Set("mapUpdate", Napi::Function::New<MapUpdate>(env, "mapUpdate"));
  exports.Set("mapDelete", Napi::Function::New<MapDelete>(env, "mapDelete"));
  exports.Set("mapNextKey", Napi::Function::New<MapNextKey>(env, "mapNextKey"));
  exports.Set("mapBatchUpdate", Napi::Function::New<MapBatchUpdate>(env, "mapBatchUpdate"));
  exports.Set("mapBatchLookup", Napi::Function::New<MapBatchLookup>(env, "mapBatchLookup"));
  exports.Set("mapBatchDelete", Napi::Function::New<MapBatchDelete>(env, "mapBatchDelete"));
  exports.Set("objPin", Napi::Function::New<ObjPin>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<ObjGet>(env, "objGet"));
  exports.Set("fdKind", Napi::Function::New<FdKindJs>(env, "fdKind"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("dupFd", Napi::Function::New<DupFd>(env, "dupFd"));
  exports.Set("numPossibleCpus", Napi::Function::New<NumPossibleCpus>(env, "numPossibleCpus"));
}

}  // namespace kw
