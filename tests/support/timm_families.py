"""The timm (and torchvision) families the project's seeds and model survey used, one small member each:
test_timm builds and trains each, test_export_registry exports each to ONNX."""

# one small member per family, with kwargs that keep test_timm fast on a 2-core CPU (test_export_registry
# exports the same list)
TIMM_MODELS: dict[str, dict] = {
    "timm/mobilenetv3_small_050": {},  # MobileNet v3
    "timm/resnet10t": {},  # ResNet (deep stem: the first conv is conv1.0)
    "timm/efficientnet_b0": {},  # EfficientNet
    "timm/densenet121": {"growth_rate": 8},  # DenseNet
    "timm/mobilevitv2_050": {},  # MobileViT-v2
    "timm/convnext_atto": {"depths": (1, 1, 1, 1)},  # ConvNeXt
    "timm/vit_tiny_patch16_224": {"depth": 2},  # ViT: built for img_size=image_size
    "shufflenet_v2": {"width_mult": 0.5},  # torchvision
    "squeezenet": {"version": "1_1"},  # torchvision
}
