"""The red team: known-bad cases for testing defences. Detectors never import this package."""

# The zoo's architectures (attack zoo), here so that the command line lists them without
# importing NumPy: grey images, and colour ones at the widths 2 CPU cores train in minutes on
# 10,000 images.
ARCHITECTURES = ("cnn", "lenet", "mlp")
COLOUR_ARCHITECTURES = {"resnet18": "resnet18(width=8)",
                        "preact-resnet18": "preact-resnet18(width=8)",
                        "vgg11": "vgg11(width=8)", "mobilenet-v2": "mobilenet-v2(width=8)",
                        "vit-small": "vit-small(width=48, depth=4)"}
