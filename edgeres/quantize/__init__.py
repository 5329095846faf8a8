"""int8 quantization: post-training (PTQ), quantization-aware training (QAT), sensitivity analysis and an
accuracy budget. NNCF is the engine (see ``engine.py``); the step that writes artifacts is ``step.py``."""
