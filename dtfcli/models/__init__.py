"""Pure `torch.nn` models: the DTF block, DTF-Net, DTF-Transformer and their baselines."""
