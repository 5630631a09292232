"""MTCNN face detection (P-Net, R-Net, O-Net cascade) on facenet-pytorch's trained weights."""
from zoo.registry import Family

FAMILY = Family("mtcnn", "MTCNN face detector: three networks and their cascade, boxes and five landmarks",
                "zoo.mtcnn.model:MTCNN", variants=("pnet", "rnet", "onet"), tasks=("detect-faces",),
                trained="facenet-pytorch==2.6.0 (pnet.pt, rnet.pt, onet.pt)")
