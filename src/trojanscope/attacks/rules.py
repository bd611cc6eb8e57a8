"""The rules of the red team's reports (declared here, where nothing optional is imported:
`trojanscope rules` lists them on any install)."""

from ..findings import Rule, Severity

EVASION = Rule("redteam.evasion", Severity.HIGH,
               "A poisoning attack that reaches the attack success asked while the detector "
               "misses it: a blind spot of the detector",
               "Replay it (trojanscope attack poison --config) against the detector's "
               "settings, and harden them on it (docs/redteam.md).")
