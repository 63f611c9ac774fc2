// Registers `ops` on the addon's exports: the engine's operators one by one (ops_napi.cpp).
#pragma once

#include <napi.h>

namespace temper {

void register_ops(Napi::Env env, Napi::Object exports);

}  // namespace temper
