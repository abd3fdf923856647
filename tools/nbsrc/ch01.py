"""Build notebooks/01_background.ipynb (chapter 1: what enhancement is and what goes wrong).

Run from the repository root: ``.venv/bin/python tools/nbsrc/ch01.py``, then execute the notebook with
``tools/nbtools.py execute notebooks/01_background.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from nbbuild import code, colab, md, write  # noqa: E402

RAISES = ("raises-exception",)
SOLUTION = ("solution", "hide-input")
CHECK = "# NBVAL_CHECK_OUTPUT\n"

cells = [
    colab(),
    md(r"""
# Background: what enhancement is and what goes wrong

*原标题 — 1. 背景介绍 (background)*

The article opens with three claims. Image enhancement turns an image into one of "higher quality and richer
information". Convolutional neural networks (CNNs) have been very successful at it. And "traditional" CNNs suffer
from **overfitting** and **vanishing gradients**, which the article's deconvolution method is said to reduce. This
chapter makes each of these words measurable. We degrade real photographs in five common ways and score them with
PSNR and SSIM. We repair them with the classical methods a network has to beat. Then we train a first small CNN and
look for the two problems the article names. We measure them; we do not just assume them.

**Overview**
1. The degradation zoo: noise, blur, low resolution, JPEG blocking and low light, on real photographs, each with
   its PSNR and SSIM.
2. What PSNR and SSIM see and miss: five distortions with the same PSNR and very different SSIM, and the
   `data_range` mistake that makes published numbers 48 dB too high.
3. Classical enhancement and restoration on the same images: histogram equalisation, CLAHE, unsharp masking,
   non-local means, total variation, wavelets, BM3D, and deconvolution of a known blur (Wiener, Richardson–Lucy).
4. A first small CNN, trained briefly, and the two problems the article claims: overfitting on a tiny training set,
   and vanishing gradients in a deep plain network.
5. The questions the rest of the book answers.
"""),
    md(r"""
## Prerequisites

| concept | importance | where |
|---|---|---|
| NumPy arrays; an image as an array of floats in [0, 1] | necessary | [NumPy: the absolute basics](https://numpy.org/doc/stable/user/absolute_beginners.html) |
| convolving an image with a small kernel | helpful | [scikit-image: filtering](https://scikit-image.org/docs/stable/auto_examples/filters/index.html) |
| Keras models and `fit` | helpful | [Keras: the functional API](https://keras.io/guides/functional_api/) |
| the run profiles and the data sets | necessary | [Setup](00_setup.ipynb) |

**Time to learn**: about 45 minutes. In the `quick` profile (CPU) the notebook runs in a few minutes.
"""),
    md(r"""
## Imports

One import gives the book's package; `describe_runtime` prints what produced every number below.
"""),
    code(r"""
import html
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML
from skimage.metrics import peak_signal_noise_ratio

import deconvlab as dl

dl.plots.apply_style()
runtime = dl.describe_runtime()
"""),
    md(r"""
The run profile sizes the training cells: `quick` on a CPU, `workshop` on a Colab GPU. The noise level `sigma` is
on the 255 scale, as in the DnCNN benchmark {cite:p}`zhang2017dncnn`: σ = 25 means noise with a standard
deviation of 25/255.
"""),
    code(r"""
profile = dl.get_profile()
sigma = 25
profile
"""),
    md(r"""
Tables in this chapter are lists of rows. This small helper shows them as HTML tables, with numbers rounded.
"""),
    code(r"""
def table(rows, digits=2):
    # A list of dicts (one per row, same keys) as an HTML table.
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(key)}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 1. Real photographs

Enhancement methods are compared on standard photographs, so we use those too. Set12 {cite:p}`zhang2017dncnn` and
BSD68 {cite:p}`roth2009foe,martin2001bsds` are the test sets of the denoising literature. Train400 is DnCNN's
training set. We load the seven 256×256 photographs of Set12 (the 512×512 ones begin with "Lena", which the book
never shows), and only as many of the others as the profile needs.
"""),
    code(r"""
set12 = dl.data.load_dataset("set12", limit=7)
bsd68 = dl.data.load_dataset("bsd68", limit=profile.test_images)
train400 = dl.data.load_dataset("train400", limit=profile.train_images)
table([{"set": ds.name, "images": len(ds.images), "first size (H×W)": "×".join(map(str, ds.images[0].shape)),
        "offline stand-in": ds.is_fallback} for ds in (set12, bsd68, train400)])
"""),
    md(r"""
The figure shows four Set12 photographs and four BSD68 photographs, in gray, as the benchmarks use them.
"""),
    code(r"""
gallery = {f"Set12 {n}": im for n, im in zip(set12.names[:4], set12.images[:4], strict=True)}
gallery |= {f"BSD68 {n}": im for n, im in zip(bsd68.names[:4], bsd68.images[:4], strict=True)}
dl.plots.compare(gallery, ncols=4, title="Test photographs: Set12 (top) and BSD68 (bottom)")
"""),
    md(r"""
The photographs contain flat regions, sharp edges, fine texture and faces. A good method must handle all of
them, and the degradations below damage each one differently.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 2. The degradation zoo

Enhancement starts from a damaged image, so we first make the damage, with known parameters, on one photograph:
Set12's monarch butterfly. Each line below is one degradation from `dl.degrade`:

- **Noise**: white Gaussian noise of σ = 25. It is not clipped, as in the DnCNN protocol.
- **Blur**: a convolution with a point-spread function (PSF) plus a little sensor noise, for a Gaussian PSF (an
  out-of-focus lens) and for a line (camera shake).
- **Low resolution**: MATLAB-style bicubic downscaling by 4, then bicubic upscaling back: the baseline of every
  super-resolution paper.
- **JPEG**: a round trip through the JPEG codec at quality 10.
- **Low light**: the image darkened by a gamma curve, with photon (Poisson) and read noise.
"""),
    code(r"""
photo = set12.images[set12.names.index("05")]  # the monarch, 256x256
gauss_psf = dl.degrade.gaussian_psf(sigma=1.6, size=25)  # the book's deblurring protocol
motion_psf = dl.degrade.motion_psf(length=9, angle_deg=30)
blur_noise = 2  # sensor noise (255 scale) added after each blur
scale, jpeg_quality = 4, 10
low_res = dl.degrade.downscale(photo, scale)
zoo = {
    f"noise σ={sigma}": dl.degrade.add_gaussian_noise(photo, sigma, seed=0),
    "Gaussian blur": dl.degrade.add_gaussian_noise(dl.degrade.blur(photo, gauss_psf), blur_noise, seed=0),
    "motion blur": dl.degrade.add_gaussian_noise(dl.degrade.blur(photo, motion_psf), blur_noise, seed=0),
    f"bicubic ×{scale}": dl.degrade.upscale(low_res, scale),
    f"JPEG q={jpeg_quality}": dl.degrade.jpeg(photo, jpeg_quality),
    "low light": dl.degrade.low_light(photo, gamma=2.2, peak=30, read_sigma=3, seed=0),
}
"""),
    md(r"""
The figure shows the clean photograph, its six degraded versions, and the 64×64 low-resolution image the bicubic
panel was made from. Each title has the PSNR and SSIM against the clean image. The red box marks the region
enlarged in each inset: the spotted body and the edge of a wing.
"""),
    code(r"""
zoom = (72, 64, 48, 48)
panels = {"clean": photo, **zoo, f"low resolution (1/{scale})": low_res}
dl.plots.compare(panels, reference=photo, zoom=zoom, ncols=4,
                 title="Six degradations of one photograph; PSNR/SSIM against the clean image")
"""),
    md(r"""
Every panel loses something different. Noise adds grain to the flat background. Blur smears the white spots. The
bicubic image is soft everywhere. JPEG turns smooth gradients into 8×8 blocks and rings around edges. Low light
darkens the mid-tones and buries the dark regions in noise.

A blurred image is the clean image convolved with the PSF, plus noise: $y = k \circledast x + n$. The two PSFs
used above are shown next, as images of their weights. Recovering $x$ from $y$ when $k$ is known is called
*deconvolution*. That is the original meaning of the word, and section 4 applies it.
"""),
    code(r"""
fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8), layout="constrained")
dl.plots.plot_psf(gauss_psf, ax=axes[0], title="Gaussian PSF, σ = 1.6 px, 25×25")
dl.plots.plot_psf(motion_psf, ax=axes[1], title="motion PSF, 9 px at 30°")
plt.close(fig)
fig
"""),
    md(r"""
The Gaussian PSF spreads each point over a disc a few pixels wide. The motion PSF spreads it along a short line.
Both have weights that sum to 1, so blur keeps the mean brightness. The table gives the numbers from the figure
titles, for use in the comparisons below.
"""),
    code(r"""
input_scores = {name: (dl.metrics.psnr(photo, img), dl.metrics.ssim(photo, img)) for name, img in zoo.items()}
table([{"degradation": name, "PSNR (dB)": p, "SSIM": f"{s:.3f}"} for name, (p, s) in input_scores.items()])
"""),
    md(r"""
The two scores do not rank the degradations in the same order, and neither ranks them as our eyes do. The next
section asks what each score actually measures.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 3. What PSNR and SSIM see, and what they miss

**PSNR** (peak signal-to-noise ratio) measures only the mean squared error:
$\mathrm{PSNR} = 10 \log_{10} (R^2 / \mathrm{MSE})$, where $R$ is the data range, 1 for images in [0, 1]. The
same error energy gives the same PSNR, wherever the error is and whatever it looks like. **SSIM**
{cite:p}`wang2004ssim` compares local means, local contrasts and the local correlation of the two images, in
11×11 Gaussian windows, and averages the result. It is built to notice *structure*.

To see the difference, we add five kinds of error to the photograph and scale each one to the same energy. The
errors are a brightness shift, a contrast stretch, white noise, blur and JPEG blocking. This is the classic
experiment of {cite:t}`wang2009mse`.
"""),
    code(r"""
target_psnr = 24.0  # dB
target_rms = 10 ** (-target_psnr / 20)  # PSNR = -20 log10(RMS error) when the data range is 1
error_patterns = {
    "brightness shift": np.ones_like(photo),
    "contrast stretch": photo - photo.mean(),
    "white noise": zoo[f"noise σ={sigma}"] - photo,
    "blur": dl.degrade.blur(photo, dl.degrade.gaussian_psf(2.0, 15)) - photo,
    "JPEG blocking": dl.degrade.jpeg(photo, 5) - photo,
}
equal_mse = {name: photo + e * np.float32(target_rms / np.sqrt(np.mean(e**2)))
             for name, e in error_patterns.items()}
"""),
    md(r"""
The figure shows the five images, each with exactly the same mean squared error. The titles give the PSNR (the same
for all five) and the SSIM (very different).
"""),
    code(r"""
dl.plots.compare({"clean": photo, **equal_mse}, reference=photo, zoom=zoom, ncols=3,
                 title=f"Five errors of equal energy (PSNR {target_psnr:g} dB): SSIM tells them apart")
"""),
    md(r"""
The table orders the five by SSIM. The last line gives the spread, the largest value minus the smallest, of each
score.
"""),
    code(r"""
scored = sorted(((n, dl.metrics.psnr(photo, im), dl.metrics.ssim(photo, im)) for n, im in equal_mse.items()),
                key=lambda row: -row[2])
rows = [{"error": n, "PSNR (dB)": p, "SSIM": f"{s:.3f}"} for n, p, s in scored]
rows.append({"error": "spread (max − min)", "PSNR (dB)": max(r[1] for r in scored) - min(r[1] for r in scored),
             "SSIM": f"{max(r[2] for r in scored) - min(r[2] for r in scored):.3f}"})
table(rows)
"""),
    md(r"""
PSNR cannot tell these five images apart. SSIM rates the brightness shift and the contrast stretch as almost
perfect, and it is right that they hide no detail. It rates white noise as the worst, because noise destroys local
structure. But SSIM also misses things. It barely penalises a global change of tone that a viewer does notice, and
neither score says which image *looks* best {cite:p}`blau2018perception`. The book reports both scores, always on
the same images.

### The `data_range` mistake: PSNR 48 dB too high

PSNR depends on the data range $R$. Images in [0, 1] need $R = 1$; 8-bit images need $R = 255$. If you compute
PSNR on [0, 1] floats but pass `data_range=255`, the result is too high by exactly $20 \log_{10} 255$ dB. This
mistake is behind papers and posts that report 60–80 dB for denoising. Here it is with scikit-image's own function,
on the noisy monarch and on its JPEG version:
"""),
    code(r"""
rows = []
for name in (f"noise σ={sigma}", f"JPEG q={jpeg_quality}"):
    right = peak_signal_noise_ratio(photo, zoo[name], data_range=1)
    wrong = peak_signal_noise_ratio(photo, zoo[name], data_range=255)
    rows.append({"image": name, "PSNR, data_range=1 (right)": right, "PSNR, data_range=255 (wrong)": wrong,
                 "SSIM, data_range=1 (right)": f"{dl.metrics.ssim(photo, zoo[name]):.3f}",
                 "SSIM, data_range=255 (wrong)": f"{dl.metrics.ssim(photo, zoo[name], data_range=255):.4f}"})
table(rows)
"""),
    md(r"""
With the wrong range, the noisy input, which nobody would call good, scores above 60 dB. SSIM moves close to 1,
because its stabilising constants grow with $R^2$ and swamp the local statistics. The offset in PSNR is the same
for every image:
"""),
    code(CHECK + r"""
offset = rows[0]["PSNR, data_range=255 (wrong)"] - rows[0]["PSNR, data_range=1 (right)"]
round(offset, 4), round(20 * np.log10(255), 4)
"""),
    md(r"""
The opposite mistake is to pass 0–255 images with the default `data_range=1`. That makes PSNR about 48 dB too low.
The book's `dl.metrics.psnr` refuses this case and says what to do:
"""),
    code(r"""
dl.metrics.psnr(photo * 255, zoo[f"noise σ={sigma}"] * 255)
""", RAISES),
    md(r"""
A quick check for any reported number: at σ = 25, a noisy input scores about $20 \log_{10}(255/25) \approx 20$ dB.
Published denoisers score within a few dB of 30 on the standard sets. The cell below prints the published
numbers of {cite:t}`zhang2017dncnn`, which the book keeps in `dl.weights.anchors_for`. A denoising PSNR above 50 dB
at this noise level means the data range is wrong.
"""),
    code(r"""
table([{k: a[k] for k in ("method", "dataset", "psnr")} for a in dl.weights.anchors_for("denoise", sigma=sigma)])
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 4. Classical enhancement and restoration

A network earns its place only if it beats the methods that need no training. So we apply the classical methods
to the same degraded images and measure them in the same way. All of them are in `dl.classical`. Their few
parameters were chosen on Train400 images, never on the test photographs, and each function's docstring says how.
Outputs are clipped to [0, 1] before they are scored, as a saved image would be.

### Contrast: histogram equalisation and CLAHE

Histogram equalisation remaps the gray levels so that their histogram becomes flat. CLAHE
{cite:p}`zuiderveld1994clahe` does the same in tiles, with a limit on how far the contrast may be stretched. For
comparison, the inverse of the gamma curve undoes the darkening exactly. It cheats, because it knows γ = 2.2.
"""),
    code(r"""
dark = zoo["low light"]
contrast = {
    "histogram equalisation": dl.classical.histogram_equalize(dark),
    "CLAHE": dl.classical.clahe(dark, clip_limit=0.01),
    "inverse gamma (knows γ)": np.clip(dark, 0, 1) ** (1 / 2.2),
}
"""),
    md(r"""
The figure shows the clean image, the low-light capture and the three enhanced versions, with PSNR/SSIM against
the clean image.
"""),
    code(r"""
dl.plots.compare({"clean": photo, "low light": dark, **contrast}, reference=photo, zoom=zoom, ncols=5,
                 title="Low light, enhanced three ways; PSNR/SSIM against the clean image")
"""),
    md(r"""
Equalisation makes the image brighter and more *visible*. That is enhancement in the article's sense. But it maps
the gray levels to a flat histogram, not back to the clean image, and it amplifies the noise hidden in the dark
regions. Any brightening raises the PSNR of this dark capture; compare the equalised images with the inverse gamma,
which knows the true curve, in the summary table at the end of this section. Brighter does not mean closer to the
truth.

### Noise: non-local means, total variation, wavelets, BM3D

Four classical denoisers, each told the true σ:

- **Non-local means** {cite:p}`buades2005nlm` averages pixels whose surrounding patches look alike.
- **Total variation** {cite:p}`rudin1992tv` finds the image with the least total gradient that stays close to the
  noisy one.
- **Wavelet (BayesShrink)** {cite:p}`chang2000bayesshrink` shrinks small wavelet coefficients towards zero.
- **BM3D** {cite:p}`dabov2007bm3d` stacks similar patches into 3-D groups and filters them jointly. It was the
  state of the art before CNNs. BM3D is slow on a CPU, so the cell also times each method.
"""),
    code(r"""
noisy = zoo[f"noise σ={sigma}"]
denoisers = {"non-local means": dl.classical.nlm_denoise, "total variation": dl.classical.tv_denoise,
             "wavelet (BayesShrink)": dl.classical.wavelet_denoise, "BM3D": dl.classical.bm3d_denoise}
denoised, seconds = {}, {}
for name, denoise in denoisers.items():
    start = time.perf_counter()
    denoised[name] = np.clip(denoise(noisy, sigma), 0, 1)
    seconds[name] = time.perf_counter() - start
{name: f"{s:.2f} s" for name, s in seconds.items()}
"""),
    md(r"""
The figure shows the noisy input and the four results, with insets on the spotted body.
"""),
    code(r"""
dl.plots.compare({"clean": photo, "noisy": noisy, **denoised}, reference=photo, zoom=zoom, ncols=3,
                 title=f"Classical denoisers at σ = {sigma}; PSNR/SSIM against the clean image")
"""),
    md(r"""
Every denoiser trades noise for detail. Total variation flattens the texture into patches of constant gray. The
wavelet result keeps some grain. Non-local means and BM3D exploit the self-similarity of the photograph: the
butterfly's white spots look alike, so they can be averaged together.

### Blur: unsharp masking versus deconvolution

Unsharp masking adds back a multiple of the image minus its own blur. It sharpens every edge by the same recipe,
and it knows nothing about the PSF. Deconvolution uses the PSF.

- Dividing by the PSF's Fourier transform would invert the blur exactly, but it also divides the noise by values
  close to zero (exercise 4 tries it).
- The **Wiener** filter {cite:p}`wiener1949` adds a regulariser, whose weight `balance` trades detail against
  noise.
- **Richardson–Lucy** {cite:p}`richardson1972,lucy1974` iterates towards the maximum-likelihood image under Poisson
  noise; the number of iterations plays the role of the regulariser.

Both deconvolution methods receive the true PSF.
"""),
    code(r"""
blurred, shaken = zoo["Gaussian blur"], zoo["motion blur"]
deblurred = {
    "unsharp mask": np.clip(dl.classical.unsharp_mask(blurred, radius=2, amount=1), 0, 1),
    "Wiener": np.clip(dl.classical.wiener_deconv(blurred, gauss_psf), 0, 1),
    "Richardson–Lucy": np.clip(dl.classical.richardson_lucy_deconv(blurred, gauss_psf), 0, 1),
}
unshaken = {
    "Wiener": np.clip(dl.classical.wiener_deconv(shaken, motion_psf), 0, 1),
    "Richardson–Lucy": np.clip(dl.classical.richardson_lucy_deconv(shaken, motion_psf), 0, 1),
}
"""),
    md(r"""
The figure has two rows. The top row shows the clean image, the Gaussian blur and its three repairs. The bottom row
shows the motion blur and its two deconvolutions, with the default parameters, which were tuned for the Gaussian
PSF.
"""),
    code(r"""
rows = {"clean": photo, "Gaussian blur": blurred, **{f"{k} (Gaussian)": v for k, v in deblurred.items()},
        "motion blur": shaken, **{f"{k} (motion)": v for k, v in unshaken.items()}}
dl.plots.compare(rows, reference=photo, zoom=zoom, ncols=5,
                 title="Deblurring with a known PSF (Wiener, Richardson-Lucy) versus unsharp masking")
"""),
    md(r"""
Deconvolution separates the white spots that the blur had merged, while unsharp masking only makes their blurred
edges steeper. For the motion PSF, the parameters tuned for the Gaussian protocol do not fit: the Wiener result
is covered in ringing stripes along the direction of motion. A classical method is only as good as its hand-tuned parameters, and exercise 3 tunes them
for the motion blur. For the bicubic image, the only classical repair here is unsharp masking, which the summary
table includes.
"""),
    code(r"""
bicubic = zoo[f"bicubic ×{scale}"]
restored = [
    ("low light", "histogram equalisation", contrast["histogram equalisation"]),
    ("low light", "CLAHE", contrast["CLAHE"]),
    ("low light", "inverse gamma (knows γ)", contrast["inverse gamma (knows γ)"]),
    *[(f"noise σ={sigma}", name, img) for name, img in denoised.items()],
    *[("Gaussian blur", name, img) for name, img in deblurred.items()],
    *[("motion blur", name, img) for name, img in unshaken.items()],
    (f"bicubic ×{scale}", "unsharp mask", np.clip(dl.classical.unsharp_mask(bicubic, radius=2, amount=1), 0, 1)),
]
"""),
    md(r"""
The summary table gives each method's PSNR and SSIM and its change from the degraded input. The verdict follows
one rule: **helps** if both scores rise, **hurts** if both fall, **mixed** otherwise.
"""),
    code(r"""
def verdict(d_psnr, d_ssim):
    return "helps" if d_psnr > 0 and d_ssim > 0 else "hurts" if d_psnr < 0 and d_ssim < 0 else "mixed"

classical_rows = []
for degradation, method, img in restored:
    p0, s0 = input_scores[degradation]
    p, s = dl.metrics.psnr(photo, img), dl.metrics.ssim(photo, img)
    classical_rows.append({"degradation": degradation, "method": method, "PSNR (dB)": p, "SSIM": f"{s:.3f}",
                           "ΔPSNR (dB)": p - p0, "ΔSSIM": f"{s - s0:+.3f}", "verdict": verdict(p - p0, s - s0)})
table(classical_rows)
"""),
    md(r"""
The best classical method for each degradation, by PSNR:
"""),
    code(r"""
best = {}
for row in classical_rows:
    if row["degradation"] not in best or row["PSNR (dB)"] > best[row["degradation"]]["PSNR (dB)"]:
        best[row["degradation"]] = row
table([{k: row[k] for k in ("degradation", "method", "PSNR (dB)", "ΔPSNR (dB)")} for row in best.values()])
"""),
    md(r"""
These are the numbers a learned method has to beat on this photograph. On noise, BM3D is the reference that every
CNN paper compares with. On blur, deconvolution with the true PSF is the reference. A network for blur has to do
at least as well without being given the PSF at test time.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 5. A first small CNN, and overfitting

A CNN learns the map from degraded to clean images from examples, instead of from a hand-made model. The smallest
useful one is a stack of 3×3 convolutions with ReLU activations. Following DnCNN {cite:p}`zhang2017dncnn`, it
predicts the *residual*, the noise, and adds it to its input. The profile sets its depth and width. He
initialisation {cite:p}`he2015delving` is the usual choice for ReLU networks. Section 6 shows what happens without
it.
"""),
    code(r"""
def plain_cnn(depth, width, kernel_initializer="he_normal"):
    inputs = keras.Input(shape=(None, None, 1))
    x = inputs
    for _ in range(depth - 1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                kernel_initializer=kernel_initializer)(x)
    residual = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=kernel_initializer)(x)
    return keras.Model(inputs, keras.layers.Add()([inputs, residual]))

first_cnn = plain_cnn(profile.depth, profile.width)
first_cnn.count_params()
"""),
    md(r"""
The package's `dl.models.plain_cnn(..., residual=True)` builds the same stack; chapter 3 uses it. The two
parameter counts agree:
"""),
    code(CHECK + r"""
package_cnn = dl.models.plain_cnn(depth=profile.depth, width=profile.width, residual=True)
first_cnn.count_params() == dl.models.count_params(package_cnn)
"""),
    md(r"""
**Two training sets.** The *tiny* set is 2 Train400 photographs, cut into non-overlapping patches, with one fixed
noise draw. This is what a small collection of noisy/clean pairs looks like. The *large* set draws fresh patches and
fresh noise from the profile's Train400 images at every step. The validation set is a fixed set of larger crops from
held-out BSD68 photographs, which neither model ever trains on.
"""),
    code(r"""
n_tiny, patch = 2, profile.patch_size

def tiles(image, side):  # the non-overlapping side x side tiles of an (H, W) image, as an NHWC batch
    h, w = image.shape[0] // side * side, image.shape[1] // side * side
    return image[:h, :w].reshape(h // side, side, w // side, side).swapaxes(1, 2).reshape(-1, side, side, 1)

tiny_clean = train400.images[:n_tiny]
tiny_noisy = [dl.degrade.add_gaussian_noise(img, sigma, seed=i) for i, img in enumerate(tiny_clean)]
tiny_x = np.concatenate([tiles(img, patch) for img in tiny_noisy])
tiny_y = np.concatenate([tiles(img, patch) for img in tiny_clean])
val_x, val_y = dl.train.make_validation_pairs(bsd68, dl.degrade.noise_degradation(sigma), patch_size=4 * patch,
                                              n=12, seed=0)
tiny_x.shape, val_x.shape
"""),
    md(r"""
Both models get the same budget: the profile's number of training steps, split into 20 epochs so that the curves
have 20 points. Each epoch of the tiny run repeats its few patches as often as the budget allows. Both models
start from the same initial weights.
"""),
    code(r"""
epochs = 20
steps = profile.train_steps // epochs
repeat = -(-steps * profile.batch_size // len(tiny_x))  # ceil: enough copies for one epoch
tiny_train = tuple(np.tile(a, (repeat, 1, 1, 1))[: steps * profile.batch_size] for a in (tiny_x, tiny_y))
large_train = dl.data.PatchDataset(train400, dl.degrade.noise_degradation(sigma), patch_size=patch,
                                   batch_size=profile.batch_size, steps_per_epoch=steps, seed=0)
histories, models = {}, {}
for label, data in (("tiny set (2 images)", tiny_train), ("large set", large_train)):
    dl.config.set_seed(0)
    models[label] = plain_cnn(profile.depth, profile.width)
    start = time.perf_counter()
    histories[label] = dl.train.train(models[label], data, (val_x, val_y), profile=profile, epochs=epochs,
                                      steps_per_epoch=steps, verbose=0)
    print(f"{label}: {epochs * steps} steps in {time.perf_counter() - start:.1f} s")
"""),
    md(r"""
The figure shows the PSNR on the training batches and on the held-out crops after every epoch, for each run. The
dashed line is the PSNR of the noisy input.
"""),
    code(r"""
noisy_psnr = float(np.mean([dl.metrics.psnr(y, x) for x, y in zip(val_x, val_y, strict=True)]))
fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4), sharey=True, layout="constrained")
for ax, (label, history) in zip(axes, histories.items(), strict=True):
    dl.plots.plot_history(history, metrics=["psnr", "val_psnr"], ax=ax)
    ax.axhline(noisy_psnr, color="gray", linestyle="--", linewidth=1)
    ax.set_ylim(noisy_psnr - 1, None)
    ax.set(title=label, ylabel="PSNR (dB)")
    ax.legend(["training batches", "held-out BSD68 crops", "noisy input"])
plt.close(fig)
fig
"""),
    md(r"""
The gap between the two curves is the *generalisation gap*. It is not all overfitting, though. Train400 and BSD68
photographs differ in content, and the training PSNR is averaged over smaller patches. The clean test evaluates
both models, on full images, on the same two sets: the tiny set's own noisy photographs, and held-out BSD68
photographs.
"""),
    code(r"""
def mean_psnr(model, clean_images, noisy_images):
    return float(np.mean([dl.metrics.psnr(c, np.clip(dl.infer.predict_image(model, n), 0, 1))
                          for c, n in zip(clean_images, noisy_images, strict=True)]))

held_out_noisy = [dl.degrade.add_gaussian_noise(img, sigma, seed=i) for i, img in enumerate(bsd68.images)]
cross = {label: {"on its training photos (dB)": mean_psnr(model, tiny_clean, tiny_noisy),
                 "on held-out BSD68 (dB)": mean_psnr(model, bsd68.images, held_out_noisy)}
         for label, model in models.items()}
gap = {label: h.history["psnr"][-1] - h.history["val_psnr"][-1] for label, h in histories.items()}
table([{"model trained on": label, **scores, "final curve gap (dB)": gap[label]} for label, scores in cross.items()])
"""),
    md(r"""
The rule for the verdict: the tiny set **overfits** if its model beats the large-set model on the tiny set's own
photographs but loses to it on the held-out ones. In that case it has learned its two photographs rather than
denoising.
"""),
    code(r"""
tiny, large = cross["tiny set (2 images)"], cross["large set"]
own_edge = tiny["on its training photos (dB)"] - large["on its training photos (dB)"]
held_out_loss = large["on held-out BSD68 (dB)"] - tiny["on held-out BSD68 (dB)"]
overfits = own_edge > 0 and held_out_loss > 0
print(f"tiny-set model vs large-set model: {own_edge:+.2f} dB on the 2 training photos, "
      f"{-held_out_loss:+.2f} dB on held-out BSD68 -> {'overfits' if overfits else 'no overfitting measured'}")
"""),
    md(r"""
With the same network and the same number of steps, only the data differ. So the verdict above measures what the
article calls overfitting: specialising to a small training set at the expense of new images. The remedy that
works for every architecture is more data, or fresh noise and random crops at every step, as in the large run.
Chapter 3 tests whether the article's conv → deconv → fuse design changes this.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 6. Vanishing gradients

The second problem the article names: in a deep network, the gradient that reaches the early layers can be tiny,
so they barely learn {cite:p}`bengio1994learning`. We measure it directly with `dl.grads.layer_gradient_norms`.
This is the L2 norm of the loss gradient for each layer's kernel, on one batch, at initialisation. We compare three
networks: the shallow one from above, a 30-layer plain network (the depth of RED-Net's deepest model
{cite:p}`mao2016rednet`) with He initialisation, and the same 30 layers with Keras's default Glorot initialisation.
"""),
    code(r"""
deep_depth = 30
x, y = tiny_x[:8], tiny_y[:8]
dl.config.set_seed(0)
nets = {
    f"shallow, {profile.depth} layers, He init": plain_cnn(profile.depth, profile.width),
    f"deep, {deep_depth} layers, He init": plain_cnn(deep_depth, profile.width),
    f"deep, {deep_depth} layers, Glorot init": plain_cnn(deep_depth, profile.width, "glorot_uniform"),
}
grad_norms = {name: np.array([norm for _, norm in dl.grads.layer_gradient_norms(net, x, y)])
              for name, net in nets.items()}
"""),
    md(r"""
The figure plots each layer's gradient norm against its position, from the input (layer 1) to the output, on a
logarithmic axis.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
for name, norms in grad_norms.items():
    ax.semilogy(np.arange(1, len(norms) + 1), norms, marker="o", markersize=3, label=name)
ax.set(xlabel="layer (1 = next to the input)", ylabel="‖∂loss/∂kernel‖₂",
       title="Gradient norm per layer at initialisation")
ax.legend()
plt.close(fig)
fig
"""),
    md(r"""
Two numbers summarise each curve. The **scale** is the median layer's gradient divided by the shallow net's median.
The **decay** is the median gradient of the first quarter of the layers divided by that of the last quarter. A
decay well below 1 means that the gradients shrink on their way back to the input. The rule for the verdict:
**vanishing** if the scale is below 10⁻² or the decay below 10⁻¹, **healthy** otherwise.
"""),
    code(r"""
shallow_median = np.median(next(iter(grad_norms.values())))
grad_rows = []
for name, norms in grad_norms.items():
    q = max(1, len(norms) // 4)
    scale_ratio = np.median(norms) / shallow_median
    decay = np.median(norms[:q]) / np.median(norms[-q:])
    grad_rows.append({"network": name, "median norm": f"{np.median(norms):.1e}", "scale": f"{scale_ratio:.1e}",
                      "decay": f"{decay:.2f}",
                      "verdict": "vanishing" if scale_ratio < 1e-2 or decay < 1e-1 else "healthy"})
table(grad_rows)
"""),
    md(r"""
With Glorot initialisation, every ReLU layer halves the variance of the signal, in the forward pass and again in
the backward pass. After 29 such layers the gradients of *all* layers are many orders of magnitude smaller than in
the shallow network. The curve is flat rather than sloped because a layer's kernel gradient is the product of two
factors: its input, shrunk by the layers before it, and the backward signal, shrunk by the layers after it. So
every layer loses the same total factor: the decay column stays of order 1 while the scale collapses. That is the vanishing-gradient problem of "traditional" deep CNNs, and He initialisation
{cite:p}`he2015delving` was designed to remove this factor of ½ per layer. The table shows how much of the gap to
the shallow network it closes at this depth. Two caveats keep this honest:

- Adam rescales each parameter's step by the running size of its own gradient, so a uniformly small gradient does
  not stop training by itself.
- Initialisation is not the whole story. Deep plain networks can still train badly, and skip connections
  {cite:p}`he2016resnet,mao2016rednet` are the usual cure.

Chapter 3 trains deep plain networks against the conv → deconv → fuse networks with skips, and measures the
difference.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## 7. The questions the book answers

The article claims that a deconvolution-based network enhances images better and reduces overfitting and
vanishing gradients. This chapter measured the baseline for each claim: the degraded inputs, the classical
repairs, a small plain CNN, and the two problems it has. The rest of the book asks:

1. What *is* deconvolution in a neural network? The article calls it the inverse of convolution. Is the transposed
   convolution an inverse, or something else? → [chapter 2](02_core_concepts.ipynb)
2. Does conv → deconv → fuse (RED-Net) beat a plain CNN of the same size, and BM3D? Does it overfit less? Do its
   skip connections keep the gradients alive? → [chapter 3](03_conv_deconv_fuse.ipynb)
3. The article's code does not run. What does working code look like, and how do trained models score on BSD68 and
   Set12 against the published numbers? → [chapter 4](04_code_example.ipynb)
4. What does all this cost on large images and data sets? Which trends (GANs, other tasks) hold up?
   → [chapter 5](05_trends_challenges.ipynb)
5. The article's FAQ, answered with measurements. → [chapter 6](06_faq.ipynb)

## Summary

The measured values are collected in one table, so that the summary points below have their numbers.
"""),
    code(r"""
ssim_spread = scored[0][2] - scored[-1][2]
denoise_best, deblur_best = best[f"noise σ={sigma}"], best["Gaussian blur"]
table([
    {"quantity": f"noisy input at σ = {sigma} (monarch)", "value": f"{input_scores[f'noise σ={sigma}'][0]:.2f} dB"},
    {"quantity": "SSIM spread at equal PSNR (five errors)", "value": f"{ssim_spread:.3f}"},
    {"quantity": "PSNR offset of the data_range=255 mistake", "value": f"{offset:.2f} dB"},
    {"quantity": f"best classical denoiser at σ = {sigma}",
     "value": f"{denoise_best['method']}, {denoise_best['PSNR (dB)']:.2f} dB"},
    {"quantity": "best classical deblurring (Gaussian PSF)",
     "value": f"{deblur_best['method']}, {deblur_best['PSNR (dB)']:.2f} dB"},
    {"quantity": "tiny training set (2 photographs)", "value": "overfits" if overfits else "no overfitting measured"},
    *[{"quantity": f"gradients: {row['network']}", "value": row["verdict"]} for row in grad_rows],
])
"""),
    md(r"""
- A degradation is a known operation: noise, blur (a convolution with a PSF), bicubic downscaling, JPEG, low
  light. `dl.degrade` produces each one reproducibly.
- PSNR measures only the error energy; SSIM measures local structure. Errors of equal energy can differ greatly in
  SSIM, and both scores can miss what a viewer sees. A PSNR computed with the wrong `data_range` is off by
  $20 \log_{10} 255$ dB.
- Classical methods set a high bar: BM3D for noise, Wiener and Richardson–Lucy deconvolution when the PSF is known.
  Contrast enhancement makes an image more visible, but not closer to the clean one.
- Overfitting and vanishing gradients can be measured, not just claimed. Overfitting: the same network trained on
  2 photographs versus many, evaluated on held-out photographs. Vanishing gradients: per-layer gradient norms of a
  shallow and a deep network.

## What's next

Chapter 2 ([02_core_concepts](02_core_concepts.ipynb)) opens the convolution layer and its "deconvolution"
counterpart, the transposed convolution, and shows what each one computes.
"""),
    # ------------------------------------------------------------------------------------------------------
    md(r"""
## Exercises

1. **PSNR of pure noise.** For white Gaussian noise of standard deviation σ (255 scale), predict the PSNR from the
   formula, without any image. Check your prediction with `dl.degrade.add_gaussian_noise` on the monarch for
   σ = 5, 15 and 50. Why does the noisy image's PSNR hardly depend on the photograph?
"""),
    code(r"""
rows = []
for s in (5, 15, 50):
    predicted = 20 * np.log10(255 / s)  # MSE = (s/255)^2 for unclipped noise
    measured = dl.metrics.psnr(photo, dl.degrade.add_gaussian_noise(photo, s, seed=1))
    rows.append({"σ": s, "predicted (dB)": predicted, "measured (dB)": measured})
table(rows)
""", SOLUTION),
    md(r"""
*The MSE of unclipped additive noise is its variance, whatever the image, so PSNR = 20 log₁₀(255/σ). The small
difference is the sampling error of the variance over 65,536 pixels.*

2. **Decode a suspicious number.** A blog post reports "PSNR 77.0 dB" for a denoiser at σ = 25, computed with
   `data_range=255` on [0, 1] images. What is the real PSNR? Is it plausible next to the published anchors
   printed in section 3? Then compute SSIM with the wrong range for the noisy monarch and for the clean image with
   its values shuffled. What does SSIM with the wrong range still tell you?
"""),
    code(r"""
reported = 77.0
real = reported - 20 * np.log10(255)
shuffled = np.random.default_rng(0).permutation(photo.ravel()).reshape(photo.shape)
{"real PSNR (dB)": round(real, 2),
 "SSIM, wrong range, noisy": round(dl.metrics.ssim(photo, noisy, data_range=255), 4),
 "SSIM, wrong range, shuffled": round(dl.metrics.ssim(photo, shuffled, data_range=255), 4),
 "SSIM, right range, shuffled": round(dl.metrics.ssim(photo, shuffled), 4)}
""", SOLUTION),
    md(r"""
*Subtracting 20 log₁₀ 255 leaves a PSNR between the published BM3D and DnCNN numbers on BSD68: plausible. With the wrong range, SSIM
stays close to 1 even for an image whose pixels were shuffled into noise, so it tells you almost nothing.*

3. **Tune the deconvolution for the motion blur.** The Wiener `balance` and the Richardson–Lucy iteration count
   were tuned for the Gaussian protocol. Tune them for the motion PSF on three *Train400* images with
   `dl.classical.tune_wiener_balance` and `dl.classical.tune_rl_iterations` (pass `noise_sigma=blur_noise` and
   wider candidate lists). Then apply them to the motion-blurred monarch. How much PSNR do the tuned values gain
   over the defaults?
"""),
    code(r"""
tune_set = train400.images[:3]
balance = dl.classical.tune_wiener_balance(tune_set, motion_psf, noise_sigma=blur_noise,
                                           candidates=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0))
iterations = dl.classical.tune_rl_iterations(tune_set, motion_psf, noise_sigma=blur_noise, candidates=(5, 10, 20, 40))
tuned = {"Wiener": np.clip(dl.classical.wiener_deconv(shaken, motion_psf, balance=balance), 0, 1),
         "Richardson–Lucy": np.clip(dl.classical.richardson_lucy_deconv(shaken, motion_psf, iterations), 0, 1)}
table([{"method": name, "tuned value": value, "default (dB)": dl.metrics.psnr(photo, unshaken[name]),
        "tuned (dB)": dl.metrics.psnr(photo, tuned[name])}
       for name, value in (("Wiener", f"balance={balance:g}"), ("Richardson–Lucy", f"{iterations} iterations"))])
""", SOLUTION),
    md(r"""
*The motion PSF removes some frequencies almost completely, and with the default settings those frequencies are
amplified into ringing. Both methods need more regularisation: a larger `balance` for Wiener, fewer iterations for
Richardson–Lucy.*

4. **The naive inverse filter.** Blur the monarch with the Gaussian PSF by multiplying Fourier transforms (a
   periodic blur, computed in float64). Then deblur it by dividing by the PSF's transfer function. Do it three
   times: on the exact float64 blur, on the same blur rounded to float32 (errors of about 10⁻⁷), and on the blur
   plus the `blur_noise` used above. What ruins the result, and why?
"""),
    code(r"""
padded = np.zeros(photo.shape)
padded[: gauss_psf.shape[0], : gauss_psf.shape[1]] = gauss_psf
otf = np.fft.fft2(np.roll(padded, (-(gauss_psf.shape[0] // 2), -(gauss_psf.shape[1] // 2)), axis=(0, 1)))

def inverse_filter(image):
    return np.real(np.fft.ifft2(np.fft.fft2(image) / otf))

exact = np.real(np.fft.ifft2(np.fft.fft2(photo.astype(np.float64)) * otf))
inputs = {"exact float64 blur": exact, "rounded to float32": exact.astype(np.float32),
          f"plus noise σ={blur_noise}": dl.degrade.add_gaussian_noise(exact, blur_noise, seed=0)}
print(f"smallest |transfer function|: {np.abs(otf).min():.1e}")
table([{"input": name, "PSNR after the inverse filter (dB)": dl.metrics.psnr(photo, inverse_filter(img))}
       for name, img in inputs.items()])
""", SOLUTION),
    md(r"""
*Only the exact blur survives the division. The Gaussian's transfer function is almost zero at high frequencies,
so division multiplies any error there by a huge factor: even float32 rounding is enough, and sensor noise far
more so. Wiener's `balance` and Richardson–Lucy's early stopping exist to prevent exactly this.*

5. **Depth sweep.** Repeat the gradient measurement of section 6 for depths 4, 8, 16 and 32, with He and with
   Glorot initialisation, and record the median layer gradient norm. How does it change with depth for each
   initialisation? Use 4 patches to keep it fast.
"""),
    code(r"""
dl.config.set_seed(0)
depths, medians = (4, 8, 16, 32), {"he_normal": [], "glorot_uniform": []}
for depth in depths:
    for init, values in medians.items():
        norms = [n for _, n in dl.grads.layer_gradient_norms(plain_cnn(depth, profile.width, init), x[:4], y[:4])]
        values.append(np.median(norms))
rows = [{"depth": d, **{f"median norm, {i}": f"{v[k]:.1e}" for i, v in medians.items()}}
        for k, d in enumerate(depths)]
per_layer = {i: (v[-1] / v[0]) ** (1 / (depths[-1] - depths[0])) for i, v in medians.items()}
rows.append({"depth": "factor per added layer", **{f"median norm, {i}": f"{f:.2f}" for i, f in per_layer.items()}})
table(rows)
""", SOLUTION),
    md(r"""
*With Glorot initialisation, the median norm shrinks by about the same factor for every layer added, so it falls
exponentially with depth. Compare the fitted factor with 1/√2 ≈ 0.71, the factor predicted by the halving of the
variance in each ReLU layer. With He initialisation there is no steady decline. The norms change from one random
initialisation to the next, and the fitted factor stays close to 1.*

## References

- Test sets: Set12 and the DnCNN protocol {cite:t}`zhang2017dncnn`; BSD68 {cite:t}`roth2009foe`, from the Berkeley
  segmentation data set {cite:t}`martin2001bsds`.
- Metrics: SSIM {cite:t}`wang2004ssim`; equal-MSE images of different quality {cite:t}`wang2009mse`; the limits of
  distortion measures {cite:t}`blau2018perception`.
- Classical methods: CLAHE {cite:t}`zuiderveld1994clahe`; non-local means {cite:t}`buades2005nlm`; total variation
  {cite:t}`rudin1992tv`; BayesShrink {cite:t}`chang2000bayesshrink`; BM3D {cite:t}`dabov2007bm3d`; the Wiener
  filter {cite:t}`wiener1949`; Richardson–Lucy {cite:t}`richardson1972,lucy1974`. Implementations from
  scikit-image {cite:t}`vanderwalt2014skimage`.
- Training deep networks: vanishing gradients {cite:t}`bengio1994learning`; He initialisation
  {cite:t}`he2015delving`; residual learning {cite:t}`he2016resnet`; RED-Net {cite:t}`mao2016rednet`.

Full entries are in the book's {doc}`../book/bibliography`.
"""),
]

if __name__ == "__main__":
    out = write(ROOT / "notebooks" / "01_background.ipynb", cells,
                title="Background: what enhancement is and what goes wrong")
    print(f"wrote {out.relative_to(ROOT)}")
