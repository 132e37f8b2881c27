"""Machine-learning core of Vize: backbones (ONNX), preprocessing, embedding, heads."""
