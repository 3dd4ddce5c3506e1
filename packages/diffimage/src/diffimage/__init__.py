"""Image diffusion: data, conditioning, U-Net presets, train / sample / edit, FID and KID.

```python
from diffimage import ImagePipeline, build_model, load_images, train_model
data = load_images("path/to/fashion_mnist", split="train")
model = build_model("fmnist", channels=1, image_size=data.size, num_classes=data.num_classes,
                    class_names=data.class_names)
result = train_model(model, data, TrainConfig(steps=2000, batch_size=128), out_dir="runs/fm")
pipe = ImagePipeline.from_pretrained(result.final_model)
images = pipe.sample(16, labels=range(16), guidance=2.0)   # (16, 1, 28, 28) in [-1, 1]
```
"""

from diffimage.conditioning import TextEncoder, attach_captions, parse_labels
from diffimage.data import (
    ImageData,
    ImageSpec,
    fit_image,
    from_arrays,
    from_hf_dataset,
    from_pil,
    load_images,
)
from diffimage.evaluate import (
    Judge,
    JudgeConfig,
    SampleReport,
    judge_accuracy,
    judge_features,
    load_judge,
    score_samples,
    train_judge,
)
from diffimage.images import load_image_files, load_mask, make_grid, save_grid, save_images
from diffimage.model import ImageDiffusion, ImageModelConfig, build_model
from diffimage.pipeline import ImagePipeline, distill_model, train_model

__all__ = [
    "ImageData",
    "ImageDiffusion",
    "ImageModelConfig",
    "ImagePipeline",
    "ImageSpec",
    "Judge",
    "JudgeConfig",
    "SampleReport",
    "TextEncoder",
    "attach_captions",
    "build_model",
    "fit_image",
    "from_arrays",
    "from_hf_dataset",
    "from_pil",
    "judge_accuracy",
    "judge_features",
    "load_image_files",
    "load_images",
    "load_judge",
    "load_mask",
    "make_grid",
    "parse_labels",
    "save_grid",
    "save_images",
    "score_samples",
    "train_judge",
    "distill_model",
    "train_model",
]
