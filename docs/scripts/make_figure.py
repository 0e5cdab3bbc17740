"""Make the site's and the README's picture: docs/images/da-filters.png.

The first 100 filters of the Theano tutorial's denoising autoencoder (784-500 tied sigmoid,
masking corruption 0.3) after one epoch on MNIST, as `npdl train da` draws them:

    NPDL_DATA_DIR=/path/to/mnist python docs/scripts/make_figure.py

needs the `[plot]` extra and the MNIST files. The picture is stored as 8-bit grayscale.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "images" / "da-filters.png"


def main():
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "npdl", "train", "da", "--epochs", "1", "--seed", "0",
                        "--out", out, "--quiet"], check=True)
        from PIL import Image  # matplotlib's own dependency

        Image.open(Path(out) / "filters_corruption_30.png").convert("L").save(TARGET, optimize=True)
    print(TARGET)


if __name__ == "__main__":
    main()
