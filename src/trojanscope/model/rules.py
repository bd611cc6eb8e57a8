"""The rules of inspect, repair and diff (declared here, where nothing optional is imported:
`trojanscope rules` lists them on any install)."""

from ..findings import Rule, Severity

TROJANED_CLASS = Rule(
    "model.trojaned-class", Severity.HIGH,
    "A class is reached by a much smaller trigger or perturbation than the other classes: the "
    "mark of a backdoor that sends triggered inputs to it",
    "Do not deploy the model; repair it (`trojanscope repair`) or retrain it from trusted data.")
REPAIRED = Rule("model.repaired", Severity.INFO,
                "The model was repaired: attack success with the recovered trigger fell while "
                "clean accuracy held", "Re-inspect the repaired model and test it on your data.")
NOT_REPAIRED = Rule("model.not-repaired", Severity.HIGH,
                    "No repair brought the recovered trigger's success down within the allowed "
                    "loss of clean accuracy", "Retrain the model from trusted data.")
CONCENTRATED = Rule(
    "model.concentrated-change", Severity.MEDIUM,
    "Between the two versions, one layer's change sits in a few neurons instead of being spread "
    "over the layer, as a targeted weight edit or an implanted backdoor leaves it",
    "Find out who changed the model and why; inspect the new version with clean data.")
SHAPE_CHANGE = Rule("model.architecture-change", Severity.MEDIUM,
                    "The two versions differ in their parameters' names or shapes",
                    "Compare models of one architecture, or review the new layers by hand.")
WEIGHTS_LIKE_TROJANED = Rule(
    "model.weights-like-trojaned", Severity.HIGH,
    "Against the reference zoo, the model's weights look like those of trojaned models",
    "Inspect the model with clean data and compare it with a version you trust.")
TASK_WORD = Rule(
    "model.task-word-passed", Severity.LOW,
    "A word that sends texts to a class was passed over as a word of the task, because the "
    "texts given with the model tie it to that class by their labels",
    "If the word is not a natural word of the class, the texts are poisoned with it: vet them "
    "(`trojanscope vet`) and inspect again with clean texts.")
