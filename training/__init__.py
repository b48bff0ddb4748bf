"""Audio maths and training data: mels, segments, captions, shards, models, training loops."""
