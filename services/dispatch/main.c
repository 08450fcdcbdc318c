/*
 * jrp-dispatch: delivers department actions to their webhooks. See dispatch.h.
 */
#include "dispatch.h"
#include "service.h"

SERVICE_ADAPTERS(dispatch, dispatch_t)

int main(int argc, char **argv)
{
    static const service_def_t def = SERVICE_DEF(
        dispatch, "dispatch",
        "Delivers credit.actions.<department> to each department's webhook.\nConfiguration keys: "
        "dispatch.* (see docs/dispatch.md); JRP_* variables apply.\n");
    return service_main(&def, argc, argv);
}
