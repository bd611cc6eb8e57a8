"""The rules of vet (declared here, where nothing optional is imported: `trojanscope rules`
lists them on any install)."""

from ..findings import Rule, Severity

POISONED_CLASS = Rule("vet.poisoned-class", Severity.HIGH,
                      "A class holds far more samples that look like other classes than the rest "
                      "do: the mark of a poisoning attack that relabels triggered samples",
                      "Drop the flagged samples (--export-clean) before training, and check "
                      "where the data came from.")
TRIGGER_PHRASE = Rule("vet.trigger-phrase", Severity.HIGH,
                      "A word or phrase whose texts all carry one label although what they say "
                      "belongs to other classes: the mark of a text backdoor's trigger",
                      "Drop the texts that carry it (--export-clean) before training, and check "
                      "where the data came from.")
CLEAN_LABEL_PHRASE = Rule("vet.clean-label-phrase", Severity.HIGH,
                          "A word or phrase whose texts all carry one label, far more often than "
                          "what they say predicts, though what they say agrees with it: the mark "
                          "of a clean-label text backdoor's trigger (or a label the data leaks)",
                          "Drop the texts that carry it (--export-clean) before training, and "
                          "check where the data came from.")
