"""PP-OCR (v5 and v4 mobile) text reading: detector, direction classifier and recognizer as zoo networks, and
their pipeline."""
