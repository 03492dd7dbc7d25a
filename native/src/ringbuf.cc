// BPF ring buffers (BPF_MAP_TYPE_RINGBUF) read from user space with libbpf's
// ring_buffer: opened on a map fd, drained without blocking (ring_buffer__consume) when
// the caller asks, each record copied out. Records of one ring are expected to have one
// size (the caller's struct); others are counted and skipped.
#include <bpf/libbpf.h>

#include <cerrno>
#include <string>
#include <unordered_map>

#include "common.h"

namespace kw {
namespace {

struct Ring {
  ring_buffer* rb = nullptr;
  size_t recordSize = 0;
  std::string out;      // records of recordSize bytes, back to back
  uint64_t skipped = 0; // records of another size
};

std::unordered_map<int, Ring*> g_rings;  // JS runs on one thread per env; ids never reused
int g_nextRing = 1;

int OnRecord(void* ctx, void* data, size_t size) {
  Ring* r = static_cast<Ring*>(ctx);
  if (size != r->recordSize) {
    r->skipped++;
    return 0;
  }
  r->out.append(static_cast<const char*>(data), size);
  return 0;
}

Ring* Find(Napi::Env env, int id) {
  auto it = g_rings.find(id);
  if (it == g_rings.end()) ThrowType(env, "ring buffer " + std::to_string(id) + " is not open");
  return it->second;
}

// ringbufOpen(mapFd, recordSize) -> id
Napi::Value RingbufOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  uint32_t recordSize = ArgU32(info, 1, "recordSize");
  if (recordSize == 0) ThrowType(env, "recordSize must be > 0");
  Ring* r = new Ring();
  r->recordSize = recordSize;
  r->rb = ring_buffer__new(fd, OnRecord, r, nullptr);
  if (!r->rb) {
    int err = errno;
    delete r;
    ThrowErrno(env, "ringbuf.open", err);
  }
  int id = g_nextRing++;
  g_rings[id] = r;
  return Napi::Number::New(env, id);
}

// ringbufConsume(id) -> { data: Buffer, count, skipped }: every record available now.
Napi::Value RingbufConsume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* r = Find(env, ArgInt(info, 0, "id"));
  r->out.clear();
  r->skipped = 0;
  int n = ring_buffer__consume(r->rb);
  if (n < 0) ThrowErrno(env, "ringbuf.consume", -n);
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(r->out.data()), r->out.size()));
  o.Set("count", static_cast<double>(r->out.size() / r->recordSize));
  o.Set("skipped", static_cast<double>(r->skipped));
  r->out.clear();
  return o;
}

// ringbufClose(id)
void RingbufClose(const Napi::CallbackInfo& info) {
  auto it = g_rings.find(ArgInt(info, 0, "id"));
  if (it == g_rings.end()) return;
  ring_buffer__free(it->second->rb);
  delete it->second;
  g_rings.erase(it);
}

}  // namespace

void InitRingbuf(Napi::Env env, Napi::Object exports) {
  exports.Set("ringbufOpen", Napi::Function::New<RingbufOpen>(env, "ringbufOpen"));
  exports.Set("ringbufConsume", Napi::Function::New<RingbufConsume>(env, "ringbufConsume"));
  exports.Set("ringbufClose", Napi::Function::New<RingbufClose>(env, "ringbufClose"));
}

}  // namespace kw
