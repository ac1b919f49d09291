"""Deep stem separation: models (MMDenseNet, Open-Unmix-compatible BLSTM,
Wave-U-Net), chunked inference, a model store and a training pipeline.

Nothing here downloads anything: the store holds models the user trained with
``demixstudio train`` or imported with ``demixstudio models import``.
"""
