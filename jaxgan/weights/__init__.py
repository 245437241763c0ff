"""ImageNet weights for the generator backbones: read, checked, mapped, saved and loaded.

- `bounds`: the caps on what a weight file may ask for, and `WeightFileError`, the one error
  every refusal raises (one line: the file, the tensor, the reason);
- `torch_pickle`: an interpreter of torch's pickles that runs no code and checks every tensor
  record; `pth` and `safetensors`: the readers of the two file kinds, using no framework;
- `source`: which reader a file needs, and torchvision's file-name hash check;
- `mapping`: torchvision / timm keys to our Flax variables, per architecture;
- `pretrained`: `convert_file` writes a converted checkpoint, `load_pretrained` puts one into
  a model's variables (`config.model.pretrained`).

The command line is `python -m jaxgan.convert`. Nothing here imports torch or TensorFlow.
"""

from jaxgan.weights.bounds import WeightFileError
from jaxgan.weights.pretrained import convert_file, load_pretrained

__all__ = ["WeightFileError", "convert_file", "load_pretrained"]
