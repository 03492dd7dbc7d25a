// The kernway addon: module init. Context-aware (per-env state in AddonData), so it can
// be loaded in several worker threads.
#include <bpf/libbpf.h>
#include <malloc.h>

#include "common.h"

namespace kw {
namespace {

// setErrorClass(BpfError): the class C++ errors are built from (native/errors.ts).
void SetErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowType(info.Env(), "setErrorClass needs a constructor");
  AddonData* data = info.Env().GetInstanceData<AddonData>();
  data->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
}

// mallocTrim(): glibc's malloc_trim(0): gives the pages of free()d chunks back to the kernel.
// glibc keeps them after a burst of allocations (a first sync reading thousands of files
// frees tens of MiB that RSS keeps counting). Returns whether any memory was released.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// mallocTrimThreshold(bytes): mallopt(M_TRIM_THRESHOLD, bytes). glibc raises its trim
// threshold (up to 64 MiB) each time a large mmap()ed block is freed, and malloc_trim()
// gives back the free top of the main arena only: the free top of a thread arena (what V8's
// and libuv's threads left) is returned only by free() once it reaches the threshold. A fixed
// threshold (which also stops the dynamic one) returns it at the next large free. Whether set.
Napi::Value MallocTrimThreshold(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) ThrowType(info.Env(), "mallocTrimThreshold needs a size in bytes");
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), mallopt(M_TRIM_THRESHOLD, info[0].As<Napi::Number>().Int32Value()) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New<SetErrorClass>(env, "setErrorClass"));
  exports.Set("mallocTrim", Napi::Function::New<MallocTrim>(env, "mallocTrim"));
  exports.Set("mallocTrimThreshold", Napi::Function::New<MallocTrimThreshold>(env, "mallocTrimThreshold"));
  InitObject(env, exports);
  InitMaps(env, exports);
  InitLinks(env, exports);
  InitProgs(env, exports);
  InitLock(env, exports);
  InitBtf(env, exports);
  InitRingbuf(env, exports);
  return exports;
}

}  // namespace
}  // namespace kw

static Napi::Object InitKernway(Napi::Env env, Napi::Object exports) { return kw::Init(env, exports); }

NODE_API_MODULE(kernway, InitKernway)
