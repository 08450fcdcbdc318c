/*
 * jrp-ledger: action status, effects list, overdue feedback and 双公示 deadlines. See ledger.h.
 */
#include "ledger.h"
#include "service.h"

SERVICE_ADAPTERS(ledger, ledger_t)

int main(int argc, char **argv)
{
    static const service_def_t def = SERVICE_DEF(
        ledger, "ledger",
        "Keeps the status of every action and disclosure; raises overdue and 双公示 "
        "alerts.\nConfiguration keys: ledger.* (see docs/ledger.md); JRP_* variables apply.\n");
    return service_main(&def, argc, argv);
}
