// Node-API face of collectives.h: CollectiveStore and CollectiveGroup classes on the addon.
#pragma once

#include <napi.h>

namespace temper {

void register_collectives(Napi::Env env, Napi::Object exports);

}  // namespace temper
