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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New<SetErrorClass>(env, "setErrorClass"));
  exports.Set("mallocTrim", Napi::Function::New<MallocTrim>(env, "mallocTrim"));
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
