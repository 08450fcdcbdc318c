/*
 * jrp-engine: turns credit events into department actions, exactly once. See engine.h.
 */
#include "engine.h"
#include "service.h"

SERVICE_ADAPTERS(engine, engine_t)

int main(int argc, char **argv)
{
    static const service_def_t def = SERVICE_DEF(
        engine, "engine",
        "Consumes credit.events and writes department actions, decisions and state.\nConfiguration "
        "keys: engine.* (see docs/configuration.md); JRP_* variables apply.\n");
    return service_main(&def, argc, argv);
}
