"""The rules of the red team's reports (declared here, where nothing optional is imported:
`trojanscope rules` lists them on any install)."""

from ..findings import Rule, Severity

EVASION = Rule("redteam.evasion", Severity.HIGH,
               "A poisoning attack that reaches the attack success asked while the detector "
               "misses it: a blind spot of the detector",
               "Replay it (trojanscope attack poison --config) against the detector's "
               "settings, and harden them on it (docs/redteam.md).")

TARGET_FLAGGED_CLEAN = Rule(
    "redteam.target-flagged-clean", Severity.MEDIUM,
    "With no attack at all, the detector already names the attacks' target class (vet on the "
    "clean training split, inspect on a clean model): its catches of the attacks say nothing "
    "of them, and the run cannot tell an evasion from a false alarm",
    "Run again with a --target the detector does not name with no attack (the report's "
    "clean_flagged), or look into the detector's false alarm on this data first.")

WEAK_CLEAN_MODEL = Rule(
    "redteam.weak-clean-model", Severity.MEDIUM,
    "The model trained the same way on the clean training split is little better than chance "
    "on the held-out samples: the episodes' models have not learnt the task, so their attack "
    "success and the detector's verdicts say little",
    "Give more data, or more --epochs.")
