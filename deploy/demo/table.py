#!/usr/bin/env python3
"""Print jrpctl tail JSON lines (Actions or Decisions) as a readable table, for make demo."""
import json
import sys
import time

names = {"91350100M000100Y43": "津门物流有限公司", "91512081MA62K0260E": "滨海交通建设集团",
         "津A12345": "津A12345 (货车)"}


def when(ms):
    ms = int(ms or 0)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def actions(rows):
    for a in rows:
        op = "APPLY " if a.get("op") == "ACTION_OP_APPLY" else "REVOKE"
        subj = a.get("subject", {}).get("id", "")
        print(f"  {op} {a.get('measure_code', ''):22} {names.get(subj, subj):20} "
              f"{a.get('memorandum_id', ''):24} {a.get('list_code') or a.get('grade_field', ''):18} "
              f"until {when(a.get('valid_until_ms'))}")


def decisions(rows):
    for d in rows:
        subj = d.get("subject", {}).get("id", "")
        print(f"  {d.get('event_id', '')[:22]:22} {d.get('outcome', '').replace('DECISION_OUTCOME_', ''):10} "
              f"{names.get(subj, subj):20} {d.get('reason', '')}")


rows = [json.loads(line) for line in sys.stdin if line.strip()]
(decisions if sys.argv[1:] == ["decisions"] else actions)(rows)
if not rows:
    print("  (none)")
