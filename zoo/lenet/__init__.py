"""LeNet-5 model of the zoo."""
from zoo.registry import Family

FAMILY = Family("lenet", "LeNet-5 as tensorrtx's lenet: 1x32x32 grey input, 10 classes, softmax output",
                "zoo.lenet.model:LeNetModel", variants=("lenet5",))
