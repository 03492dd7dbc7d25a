// The whole addon as one translation unit: node-addon-api's headers cost ~1 s of
// compile time per unit, so one unit builds in less than half the time of six.
// The parts stay in their own files; binding.gyp compiles only this one.
#include "addon.cc"
#include "btf.cc"
#include "common.cc"
#include "links.cc"
#include "maps.cc"
#include "object.cc"
#include "progs.cc"
#include "ringbuf.cc"
#include "lock.cc"
