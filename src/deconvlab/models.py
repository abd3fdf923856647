"""The book's restoration networks, built with the Keras functional API and ``keras.ops`` only.

Every model takes ``keras.Input(shape=(None, None, channels))`` NHWC batches of any height and width
(odd sizes, 1x1, sizes not divisible by the stride): strided models pad inside the graph with
:class:`~deconvlab.layers.PadToMultiple` and crop back with :class:`~deconvlab.layers.CropToReference`.

Design choices, stated once:

* 'same' padding everywhere. RED-Net (Mao et al. 2016) uses 'valid' convolutions mirrored by 'full'
  transposed convolutions, which also returns the input size; 'same' gives the same shapes layer by
  layer, so skips fuse without cropping, and differs only in how the borders are extrapolated.
* With ``down="strided"`` the first encoder conv has stride 2 and the last decoder layer upsamples by 2;
  the transposed-conv upsampler uses a 4x4 kernel (a multiple of the stride) so every output pixel gets
  the same number of kernel taps, avoiding the checkerboard of uneven overlap (Odena et al. 2016).
* ``model_spec(model)`` returns the builder name and arguments a model was made with (kept in a
  module dictionary, so weights cards can record them; a model loaded from disk has none).
* :func:`unet` is the resolution-changing family: strided convolutions down, transposed convolutions up at
  every scale, so most layers run at a half or a quarter of the resolution.
* :func:`macs_per_pixel`, :func:`receptive_field_radius` and :func:`total_stride` read a model's cost per
  output pixel and its tiling geometry from its layers (no image is run).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import inspect
import math
import weakref
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import keras

from .checks import integer
from .errors import ArgumentError
from .layers import (
    ICNR,
    BicubicUpsample,
    BilinearKernel,
    BilinearUpsample,
    Blend,
    CropToReference,
    DepthToSpace,
    PadToMultiple,
)

FUSIONS = ("add", "concat", "gate")
DOWNS = ("none", "strided")
UPS = ("transposed", "resize", "subpixel")
#: How a learned upsampler starts: He-normal (random phases: a checkerboard at initialisation), bilinear
#: (transposed convolution only) or ICNR (transposed or sub-pixel); the last two start checkerboard-free.
UP_INITS = ("he_normal", "bilinear", "icnr")
SR_UPSAMPLES = ("pre", "post")
#: The low-resolution body of a post-upsampling SR model: RED-Net's encoder-decoder with symmetric skips, or a
#: stack of residual blocks (conv-ReLU-conv plus identity, EDSR without its scaling) behind one long skip.
SR_BODIES = ("red_net", "resblocks")
#: How a post-upsampling SR model's global skip enlarges its input: bilinear, or MATLAB's bicubic (the
#: protocol's own baseline, so the network learns only what bicubic misses).
SR_SKIPS = ("bilinear", "bicubic")

# builder name and arguments of every model built in this session (see `model_spec`)
_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _records_spec(builder: Callable[..., keras.Model] | None = None, *,
                  inherits: Callable[..., keras.Model] | None = None):
    """Remember the builder's full argument list (defaults included) for each model it returns.

    `inherits` names the builder that receives ``**kwargs``: its defaults are recorded too, so a card
    stays complete even if a default changes later.
    """
    if builder is None:
        return functools.partial(_records_spec, inherits=inherits)
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def wrapper(*args, **kwargs):
        model = builder(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        extra = arguments.pop("kwargs", {})
        if inherits is not None:
            for key, param in inspect.signature(inherits).parameters.items():
                arguments.setdefault(key, param.default)
        arguments.update(extra)
        _SPECS[model] = {"builder": builder.__name__, "kwargs": arguments}
        return model

    return wrapper


def model_spec(model: keras.Model) -> dict[str, Any] | None:
    """``{"builder": name, "kwargs": {...}}`` a model was built with, or None if unknown."""
    spec = _SPECS.get(model)
    return None if spec is None else {"builder": spec["builder"], "kwargs": dict(spec["kwargs"])}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ArgumentError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")


def _check_integers(minimum: int, **values: Any) -> None:
    """Check, in order, that every keyword argument is an integer >= `minimum` (the error names it)."""
    for name, value in values.items():
        integer(name, value, minimum)


#: Variance scale of RED-Net's linear output layer (He init uses 2): the untrained net is close to the identity.
OUTPUT_INIT_SCALE = 1e-4
#: How :func:`plain_cnn` starts its linear output conv: He normal, or "small" (variance scale
#: :data:`OUTPUT_INIT_SCALE`, as RED-Net's and the U-Net's output layers start).
OUTPUT_INITS = ("he_normal", "small")


def _conv_args(kernel_size: int, initializer: Any = "he_normal") -> dict[str, Any]:
    # He initialisation suits the ReLU stacks; 'same' keeps every feature map at the input size
    return {"kernel_size": kernel_size, "padding": "same", "kernel_initializer": initializer}


def _small_init() -> keras.initializers.Initializer:
    """A fresh initialiser of variance scale :data:`OUTPUT_INIT_SCALE`, for a layer that starts near zero."""
    return keras.initializers.VarianceScaling(scale=OUTPUT_INIT_SCALE)


def _image_input(channels: int, name: str = "image") -> keras.KerasTensor:
    return keras.Input(shape=(None, None, channels), name=name)


def _model(inputs, x, name: str, residual=None) -> keras.Model:
    """The model `inputs` -> `x`, plus `residual` (the global skip) by a float32 Add named "residual".

    Under a mixed-precision policy the output is handed back in float32 (Keras' advice for the last layer).
    Residual models already end in a float32 Add/Subtract, which also keeps the input's full precision.
    """
    if residual is not None:
        x = keras.layers.Add(dtype="float32", name="residual")([residual, x])
    if keras.backend.standardize_dtype(x.dtype) != "float32":
        x = keras.layers.Activation("linear", dtype="float32", name="output")(x)
    return keras.Model(inputs, x, name=name)


def _check_up_init(up_init: str, up: str) -> None:
    _check_choice("up_init", up_init, UP_INITS)
    if up_init == "bilinear" and up != "transposed":
        raise ArgumentError(f"up_init='bilinear' sets transposed-convolution kernels, not up={up!r}: "
                            "use up_init='icnr' for 'subpixel' ('resize' starts checkerboard-free by itself)")
    if up_init == "icnr" and up == "resize":
        raise ArgumentError("up='resize' starts checkerboard-free by itself: use up_init='he_normal'")


def _up_initializer(up_init: str, factor: int, transposed: bool, gain: float = 1.0):
    if up_init == "bilinear":
        return BilinearKernel(factor, gain=gain)
    if up_init == "icnr":
        return ICNR(factor, transposed=transposed, gain=gain)
    return "he_normal" if gain == 1.0 else keras.initializers.VarianceScaling(scale=2.0 * gain**2)


def _upsample(x, filters: int, factor: int, up: str, kernel_size: int, activation, name: str,
              up_init: str = "he_normal", gain: float = 1.0):
    """Upsample feature maps by an integer `factor` with a transposed conv, resize+conv or sub-pixel conv."""
    transposed = up == "transposed"
    # a transposed kernel a multiple of the stride: even overlap, no checkerboard from the layer itself
    kernel = 2 * factor if transposed else kernel_size
    args = _conv_args(kernel, _up_initializer(up_init, factor, transposed, gain))
    if transposed:
        return keras.layers.Conv2DTranspose(filters, strides=factor, activation=activation, name=name,
                                            **args)(x)
    if up == "resize":
        x = keras.layers.UpSampling2D(factor, interpolation="nearest", name=f"{name}_resize")(x)
        return keras.layers.Conv2D(filters, activation=activation, name=name, **args)(x)
    x = keras.layers.Conv2D(filters * factor * factor, activation=activation, name=name, **args)(x)
    return DepthToSpace(factor, name=f"{name}_shuffle")(x)


def _fuse(encoder, decoder, fusion: str, width: int, level: int):
    """Fuse an encoder feature into its mirrored decoder feature (add, concat + 1x1 conv, or a learned gate)."""
    if fusion == "add":
        # RED-Net: sum first, rectify after (the decoder layer before this is linear)
        x = keras.layers.Add(name=f"fuse{level}")([encoder, decoder])
        return keras.layers.ReLU(name=f"fuse{level}_relu")(x)
    both = keras.layers.Concatenate(name=f"fuse{level}_concat")([encoder, decoder])
    if fusion == "concat":
        return keras.layers.Conv2D(
            width, kernel_size=1, activation="relu", kernel_initializer="he_normal", name=f"fuse{level}"
        )(both)
    gate = keras.layers.Conv2D(width, kernel_size=1, activation="sigmoid", name=f"gate{level}")(both)
    return Blend(name=f"fuse{level}")([gate, encoder, decoder])


def _encoder_decoder(x, *, out_filters: int, out_activation, depth: int, width: int, kernel_size: int,
                     skip_every: int, fusion: str, down: str, up: str, up_init: str):
    """RED-Net body: `depth` convs, `depth` mirrored transposed convs, symmetric skips every `skip_every`."""
    features = {}
    for i in range(1, depth + 1):
        strides = 2 if down == "strided" and i == 1 else 1
        x = keras.layers.Conv2D(
            width, strides=strides, activation="relu", name=f"conv{i}", **_conv_args(kernel_size)
        )(x)
        features[i] = x
    for j in range(1, depth):
        level = depth - j  # decoder layer j restores the shape of encoder feature `level`
        fused = skip_every > 0 and level % skip_every == 0
        activation = None if fused and fusion == "add" else "relu"
        x = keras.layers.Conv2DTranspose(
            width, activation=activation, name=f"deconv{j}", **_conv_args(kernel_size)
        )(x)
        if fused:
            x = _fuse(features[level], x, fusion, width, level)
    if down == "strided":
        return _upsample(x, out_filters, 2, up, kernel_size, out_activation, f"deconv{depth}", up_init)
    # The skips sum ReLU features, so with He init the untrained residual is many times the [0, 1] range
    # of the images; a tiny last layer starts the net near the identity and training skips that detour.
    init = _small_init() if out_activation is None else "he_normal"
    return keras.layers.Conv2DTranspose(
        out_filters, activation=out_activation, name=f"deconv{depth}", **_conv_args(kernel_size, init)
    )(x)


def _check_red_net_args(channels, depth, width, kernel_size, skip_every, fusion, down, up, up_init) -> None:
    _check_integers(1, channels=channels, depth=depth, width=width, kernel_size=kernel_size)
    integer("skip_every", skip_every, 0)
    _check_choice("fusion", fusion, FUSIONS)
    _check_choice("down", down, DOWNS)
    _check_choice("up", up, UPS)
    _check_up_init(up_init, up)


@_records_spec
def red_net(channels: int = 1, depth: int = 15, width: int = 64, kernel_size: int = 3, skip_every: int = 2,
            fusion: str = "add", down: str = "none", up: str = "transposed", global_residual: bool = True,
            up_init: str = "he_normal", name: str = "red_net") -> keras.Model:
    """RED-Net: conv encoder, mirrored transposed-conv decoder, symmetric skip fusion. Taught in chapter 3.

    `depth` Conv2D+ReLU layers, then `depth` Conv2DTranspose layers (the last one linear, to `channels`).
    Every `skip_every` layers (0: no skips) the encoder feature is fused into the mirrored decoder feature
    by `fusion`: "add" (RED-Net: sum, then ReLU), "concat" (concatenate, 1x1 conv + ReLU) or "gate"
    (g = sigmoid(1x1 conv([enc, dec])), out = g*enc + (1-g)*dec). With `global_residual` the output is
    input + decoder output. `down="strided"` runs the middle at half resolution; `up` picks the final
    x2 upsampler: "transposed" (4x4, stride 2), "resize" (nearest + conv) or "subpixel" (conv + shuffle), and
    `up_init` how it starts (see :data:`UP_INITS`; "bilinear" and "icnr" are checkerboard-free at initialisation).
    """
    _check_red_net_args(channels, depth, width, kernel_size, skip_every, fusion, down, up, up_init)
    defaults = inspect.signature(red_net).parameters
    if down == "none" and (up, up_init) != (defaults["up"].default, defaults["up_init"].default):
        # a card would record an upsampler the model does not have
        raise ArgumentError(f"up={up!r} and up_init={up_init!r} choose the x2 upsampler of down='strided': drop "
                            "them, or pass down='strided'")
    inputs = _image_input(channels)
    x = PadToMultiple(2, name="pad")(inputs) if down == "strided" else inputs
    x = _encoder_decoder(
        x, out_filters=channels, out_activation=None, depth=depth, width=width, kernel_size=kernel_size,
        skip_every=skip_every, fusion=fusion, down=down, up=up, up_init=up_init,
    )
    if down == "strided":
        x = CropToReference(name="crop")([x, inputs])
    return _model(inputs, x, name, inputs if global_residual else None)


@_records_spec
def plain_cnn(channels: int = 1, depth: int = 30, width: int = 64, kernel_size: int = 3,
              residual: bool = False, name: str = "plain_cnn", output_init: str = "he_normal") -> keras.Model:
    """Plain deep CNN (no transposed convs, no skips), the control for RED-Net comparisons. Taught in chapter 3.

    `depth` conv layers: `depth - 1` Conv2D+ReLU of `width` channels, then a linear conv to `channels`.
    ``plain_cnn(depth=2 * d, width=w)`` has exactly the parameters of ``red_net(depth=d, width=w,
    fusion="add")`` (a 3x3 transposed conv has as many weights as a 3x3 conv), so comparisons are matched
    in both depth and size; use :func:`width_for_params` to match other configurations. `output_init`
    "small" starts the linear output conv as RED-Net's (variance scale :data:`OUTPUT_INIT_SCALE`, near zero)
    instead of He normal, so both families start alike (the ablation ladder, ``benchmarks/ladder.py``).
    """
    _check_integers(1, channels=channels, depth=depth, width=width, kernel_size=kernel_size)
    _check_choice("output_init", output_init, OUTPUT_INITS)
    inputs = _image_input(channels)
    x = inputs
    for i in range(1, depth):
        x = keras.layers.Conv2D(width, activation="relu", name=f"conv{i}", **_conv_args(kernel_size))(x)
    init = _small_init() if output_init == "small" else "he_normal"
    x = keras.layers.Conv2D(channels, name=f"conv{depth}", **_conv_args(kernel_size, init))(x)
    return _model(inputs, x, name, inputs if residual else None)


@_records_spec
def dncnn(channels: int = 1, depth: int = 17, width: int = 64, name: str = "dncnn") -> keras.Model:
    """DnCNN (Zhang et al. 2017): conv+ReLU, (conv+BN+ReLU) x (depth-2), conv; output = input - noise. Taught in chapter 4.

    Layer for layer as the authors' Keras code: orthogonal initialisation, biases only in the first conv,
    BatchNormalization(epsilon=1e-4). For gray 17x64 that is 556,096 trainable parameters (0.556 M) plus
    1,920 BN moving statistics. BN momentum is 0.9 rather than Keras' 0.99 so the moving statistics
    keep up with the book's short trainings.
    """
    integer("channels", channels, 1)
    integer("depth", depth, 2)
    integer("width", width, 1)
    conv_args = _conv_args(3, "orthogonal")
    inputs = _image_input(channels)
    x = keras.layers.Conv2D(width, activation="relu", name="conv1", **conv_args)(inputs)
    for i in range(2, depth):
        x = keras.layers.Conv2D(width, use_bias=False, name=f"conv{i}", **conv_args)(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    noise = keras.layers.Conv2D(channels, use_bias=False, name=f"conv{depth}", **conv_args)(x)
    outputs = keras.layers.Subtract(dtype="float32", name="residual")([inputs, noise])
    return _model(inputs, outputs, name)


@_records_spec
def fsrcnn(scale: int, channels: int = 1, d: int = 56, s: int = 12, m: int = 4,
           name: str = "fsrcnn") -> keras.Model:
    """FSRCNN (Dong et al. 2016): LR input, conv layers, then Conv2DTranspose(9x9, stride=scale).

    feature extraction 5x5 (d) -> shrinking 1x1 (s) -> m mapping 3x3 (s) -> expanding 1x1 (d), each with
    PReLU (alpha 0.25, shared over space so any image size works), then the deconvolution to `channels`
    (Gaussian init, std 0.001, as in the paper). FSRCNN(56, 12, 4) has 12,464 weights (paper count, no biases).
    """
    _check_integers(1, scale=scale, channels=channels, d=d, s=s)
    integer("m", m, 0)

    def conv_prelu(x, filters, kernel_size, layer_name):
        x = keras.layers.Conv2D(filters, name=layer_name, **_conv_args(kernel_size))(x)
        return keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=f"{layer_name}_prelu"
        )(x)

    inputs = _image_input(channels, name="lr")
    x = conv_prelu(inputs, d, 5, "feature")
    x = conv_prelu(x, s, 1, "shrink")
    for i in range(1, m + 1):
        x = conv_prelu(x, s, 3, f"map{i}")
    x = conv_prelu(x, d, 1, "expand")
    outputs = keras.layers.Conv2DTranspose(
        channels, strides=scale, name="deconv", **_conv_args(9, keras.initializers.RandomNormal(stddev=0.001))
    )(x)
    return _model(inputs, outputs, name)


@_records_spec(inherits=red_net)
def red_net_sr(scale: int | None = None, channels: int = 1, upsample: str = "pre", name: str = "red_net_sr",
               body: str = "red_net", skip: str = "bilinear", **kwargs: Any) -> keras.Model:
    """RED-Net for super-resolution, pre- or post-upsampling. Taught in chapter 5.

    "pre": the input is the bicubic-upsampled image (as VDSR and RED-Net do), the model is :func:`red_net`
    and `scale` is only recorded. "post": the input is the LR image; the body runs at low resolution and ends
    with `width` features, an upsampler by `scale` (selected by `up`, default a transposed conv with kernel
    2*scale) maps them to `channels`, and the global fusion adds the input enlarged by `skip` ("bilinear" or
    "bicubic", MATLAB's). `body` "red_net" is RED-Net's encoder-decoder; "resblocks" is `depth` residual blocks
    (conv-ReLU-conv + identity) between a linear head conv and a linear end conv joined by a long skip, so
    its `depth` blocks cost as many convolutions as RED-Net's `depth` + `depth` layers (plus the head and end convs). ``up_init="bilinear"``
    (transposed) or ``"icnr"`` (transposed or sub-pixel) starts the upsampler free of checkerboard artifacts.
    Other keyword arguments go to :func:`red_net`.
    """
    _check_choice("upsample", upsample, SR_UPSAMPLES)
    _check_choice("body", body, SR_BODIES)
    _check_choice("skip", skip, SR_SKIPS)
    red_net_params = inspect.signature(red_net).parameters
    unknown = sorted(set(kwargs) - set(red_net_params))
    if unknown:
        raise ArgumentError(f"red_net_sr got unknown arguments {unknown}: use red_net's keyword arguments")
    if scale is not None:
        integer("scale", scale, 1)
    if upsample == "pre":
        if body != "red_net" or skip != "bilinear":
            raise ArgumentError("body and skip choose the post-upsampling model's parts: use upsample='post', "
                                "or drop them for the pre-upsampling RED-Net")
        return red_net(channels=channels, name=name, **kwargs)
    if scale is None:
        raise ArgumentError("red_net_sr(upsample='post') needs scale: pass scale=2, 3 or 4")
    args = {k: kwargs.get(k, p.default) for k, p in red_net_params.items()}
    # red_net's arguments that shape its encoder-decoder body (and that _check_red_net_args checks)
    body_names = ("depth", "width", "kernel_size", "skip_every", "fusion", "down", "up", "up_init")
    body_args = {k: args[k] for k in body_names}
    _check_red_net_args(channels, **body_args)
    ignored = [k for k in ("down", "fusion", "skip_every") if args[k] != red_net_params[k].default]
    if body == "resblocks" and ignored:  # else a card would record arguments its model never used
        raise ArgumentError(f"body='resblocks' keeps the low resolution and has no encoder-decoder skips: drop "
                            f"{', '.join(ignored)}")
    if not args["global_residual"] and skip != inspect.signature(red_net_sr).parameters["skip"].default:
        raise ArgumentError("skip chooses how the global residual enlarges the input: drop it with "
                            "global_residual=False")
    inputs = _image_input(channels, name="lr")
    x = PadToMultiple(2, name="pad")(inputs) if args["down"] == "strided" else inputs
    if body == "resblocks":
        x = _residual_blocks(x, depth=args["depth"], width=args["width"], kernel_size=args["kernel_size"])
    else:
        x = _encoder_decoder(x, out_filters=args["width"], out_activation="relu", **body_args)
    # the resblocks body ends linear (no ReLU), so an upsampler with the usual gain would add an O(1) random
    # image to the skip; started small, the untrained model is the bicubic (or bilinear) baseline itself
    gain = math.sqrt(OUTPUT_INIT_SCALE) if body == "resblocks" else 1.0
    x = _upsample(x, channels, scale, args["up"], args["kernel_size"], None, "upsample", args["up_init"], gain)
    if args["down"] == "strided":
        x = CropToReference(scale, name="crop")([x, inputs])
    enlarge = BicubicUpsample if skip == "bicubic" else BilinearUpsample
    base = enlarge(scale, dtype="float32", name="input_upsample")(inputs) if args["global_residual"] else None
    return _model(inputs, x, name, base)


def _residual_blocks(x, *, depth: int, width: int, kernel_size: int):
    """Head conv, `depth` blocks x + conv(ReLU(conv(x))), end conv, plus the head (the long skip)."""
    head = x = keras.layers.Conv2D(width, name="head", **_conv_args(kernel_size))(x)
    for i in range(1, depth + 1):
        r = keras.layers.Conv2D(width, activation="relu", name=f"res{i}_conv1", **_conv_args(kernel_size))(x)
        # each block starts near the identity (as RED-Net's output layer does): with He init on both convs and
        # no normalisation, every block would double the features' variance and a deep stack would blow up
        r = keras.layers.Conv2D(width, name=f"res{i}_conv2", **_conv_args(kernel_size, _small_init()))(r)
        x = keras.layers.Add(name=f"res{i}")([x, r])
    x = keras.layers.Conv2D(width, name="body_end", **_conv_args(kernel_size))(x)
    return keras.layers.Add(name="long_skip")([head, x])


@_records_spec
def unet(channels: int = 1, widths: tuple[int, ...] = (48, 96, 192), depths: tuple[int, ...] = (2, 2, 2),
         kernel_size: int = 3, down_kernel: int = 2, up_kernel: int = 4, up_init: str = "bilinear",
         fusion: str = "add", global_residual: bool = True, name: str = "unet") -> keras.Model:
    """Multi-scale encoder-decoder whose transposed convolutions bring features back up a scale. Taught in chapter 5.

    Scale ``l`` (``len(widths)`` of them, each half the resolution of the one before) runs ``depths[l]``
    conv+ReLU layers of ``widths[l]`` channels; a ``down_kernel`` x ``down_kernel`` stride-2 conv+ReLU goes
    down (2 is pixel-unshuffle followed by a 1x1 conv), a ``up_kernel`` x ``up_kernel`` stride-2 transposed conv
    comes back up, its output is fused with the encoder feature of that scale (`fusion`, as in :func:`red_net`)
    and ``depths[l]`` more conv+ReLU layers follow. A linear conv maps to `channels`, started near zero, and
    with `global_residual` the output is input + that. Inputs of any size are padded to a multiple of
    ``2 ** (len(widths) - 1)`` and cropped back. `up_init` "bilinear" (``up_kernel == 4``) or "icnr" starts
    every transposed conv free of checkerboard artifacts. Widths that double as the resolution halves cost
    the same multiply-adds per pixel at every scale, so the parameters sit at low resolution, where they are cheap.
    """
    integer("channels", channels, 1)
    widths = tuple(integer("widths", w, 1) for w in _as_sequence("widths", widths))
    depths = tuple(integer("depths", d, 1) for d in _as_sequence("depths", depths))
    if len(widths) < 2 or len(depths) != len(widths):
        raise ArgumentError(f"unet needs two or more widths and one depth per width, got widths={list(widths)}, "
                            f"depths={list(depths)}: e.g. widths=(48, 96, 192), depths=(2, 2, 2)")
    integer("kernel_size", kernel_size, 1)
    _check_integers(2, down_kernel=down_kernel, up_kernel=up_kernel)
    if up_kernel % 2:
        raise ArgumentError(f"up_kernel={up_kernel} is not a multiple of the stride 2: uneven overlap paints a "
                            "checkerboard (Odena et al. 2016); use 2 or 4")
    _check_up_init(up_init, "transposed")
    if up_init == "bilinear" and up_kernel != 4:
        raise ArgumentError(f"up_init='bilinear' needs up_kernel=4 (twice the stride), got {up_kernel}: "
                            "use up_init='icnr'")
    _check_choice("fusion", fusion, FUSIONS)
    levels = len(widths)
    inputs = _image_input(channels)
    x = PadToMultiple(2 ** (levels - 1), name="pad")(inputs)
    skips = []
    for level, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        for i in range(1, depth + 1):
            x = keras.layers.Conv2D(width, activation="relu", name=f"enc{level}_conv{i}", **_conv_args(kernel_size))(x)
        if level < levels - 1:
            skips.append(x)
            x = keras.layers.Conv2D(widths[level + 1], strides=2, activation="relu", name=f"down{level}",
                                    **_conv_args(down_kernel))(x)
    for level in reversed(range(levels - 1)):
        x = keras.layers.Conv2DTranspose(
            widths[level], strides=2, activation=None if fusion == "add" else "relu", name=f"up{level}",
            **_conv_args(up_kernel, _up_initializer(up_init, 2, True)),
        )(x)
        x = _fuse(skips[level], x, fusion, widths[level], level)
        for i in range(1, depths[level] + 1):
            x = keras.layers.Conv2D(widths[level], activation="relu", name=f"dec{level}_conv{i}",
                                    **_conv_args(kernel_size))(x)
    x = keras.layers.Conv2D(channels, name="tail", **_conv_args(kernel_size, _small_init()))(x)
    x = CropToReference(name="crop")([x, inputs])
    return _model(inputs, x, name, inputs if global_residual else None)


def _as_sequence(name: str, value: Any) -> tuple:
    # cards store tuples as JSON lists; a bare int is a common slip worth a clear message
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ArgumentError(f"{name} must be a list of integers, e.g. {name}=(48, 96, 192); got {value!r}")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    builder.__name__: builder for builder in (red_net, plain_cnn, dncnn, fsrcnn, red_net_sr, unet)
}


def get_builder(name: str) -> Any:
    """The builder function of that name in :data:`BUILDERS`; ArgumentError naming them all otherwise."""
    try:
        return BUILDERS[name]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown model {name!r}: use one of {', '.join(BUILDERS)}") from None


def build_model(name: str, /, **kwargs: Any) -> keras.Model:
    """Build a model by builder name ("red_net", "plain_cnn", "dncnn", "fsrcnn", "red_net_sr", "unet")."""
    builder = get_builder(name)
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not takes_any:
        raise ArgumentError(f"{name} does not take {', '.join(unknown)}: use {', '.join(params)}")
    try:
        return builder(**kwargs)
    except TypeError as err:  # a missing required argument such as fsrcnn's scale
        raise ArgumentError(f"cannot build {name}: {err}; pass the missing argument") from None


def _size(variable) -> int:
    return math.prod(int(d) for d in variable.shape)


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Number of parameters (trainable only by default, as papers report them). Taught in chapter 3."""
    variables = model.trainable_variables if trainable_only else model.variables
    return sum(_size(v) for v in variables)


def width_for_params(builder: str | Callable[..., keras.Model], target_params: int, *,
                     max_width: int = 1024, **kwargs: Any) -> int:
    """Width whose model has the trainable-parameter count closest to `target_params`. Taught in chapter 3.

    Parameter counts grow monotonically with width, so a binary search builds about log2(max_width)
    models; e.g. ``width_for_params("plain_cnn", count_params(red_net(fusion="concat")), depth=30)``.
    """
    build = builder if callable(builder) else get_builder(builder)
    integer("target_params", target_params, 1)
    integer("max_width", max_width, 1)

    @functools.cache
    def params_at(width: int) -> int:
        return count_params(build(width=width, **kwargs))

    # the smallest width with at least target_params parameters, or max_width if no smaller one has them
    lo = bisect.bisect_left(range(1, max_width), target_params, key=params_at) + 1
    if lo > 1 and target_params - params_at(lo - 1) <= params_at(lo) - target_params:
        return lo - 1
    return lo


# ------------------------------------------------------------------------------------ cost and receptive field
# Both walk the functional graph once and track, for every feature map and each spatial axis, its *jump* (input
# pixels per feature pixel, a Fraction: 2 after a stride-2 conv, 1/3 after a x3 upsampler) and how far, in input
# pixels, its values reach beyond the input block a feature pixel sits on (left and right).

_POINTWISE = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU,
    keras.layers.Softmax, keras.layers.BatchNormalization, keras.layers.LayerNormalization,
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise, keras.layers.Identity,
    keras.layers.Rescaling, PadToMultiple,
)
_MERGES = (
    keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average, keras.layers.Maximum,
    keras.layers.Minimum, keras.layers.Concatenate, Blend,
)


@dataclasses.dataclass(frozen=True)
class _Reach:
    """One spatial axis of a feature map: jump and reach beyond its block, in input pixels."""

    jump: Fraction
    left: Fraction = Fraction(0)
    right: Fraction = Fraction(0)


def _conv_reach(r: _Reach, kernel: int, stride: int, dilation: int) -> _Reach:
    # 'same' pads half the total pad (rounded down) before: output o reads taps s*o - a ... s*o + k - 1 - a.
    # The total depends on the input length n: max(k - s, 0) when s divides n, max(k - n % s, 0) otherwise,
    # so a is at most (k - 1) // 2 (n % s = 1, the left reach's worst case) and at least max(k - s, 0) // 2
    # (s divides n, the right reach's): a model without PadToMultiple may see either.
    k = dilation * (kernel - 1) + 1
    a_most, a_least = (k - 1) // 2, max(k - stride, 0) // 2
    return _Reach(r.jump * stride, r.left + a_most * r.jump, r.right + (k - a_least - stride) * r.jump)


def _phase_reach(r: _Reach, factor: int, spans: list[tuple[int, int]]) -> _Reach:
    """Upsampling by `factor` whose output phase o reads input pixels ``spans[o]`` = (lo, hi): farthest reach.

    Phase o covers o/f ... (o+1)/f of input pixel 0: it reaches o/f - lo pixels left, hi + 1 - (o+1)/f right.
    Phases 0 and f-1 read at least their own pixel, so both maxima are >= 0.
    """
    left = max(Fraction(o, factor) * r.jump - lo * r.jump for o, (lo, _) in enumerate(spans))
    right = max((hi + 1) * r.jump - Fraction(o + 1, factor) * r.jump for o, (_, hi) in enumerate(spans))
    return _Reach(r.jump / factor, r.left + left, r.right + right)


def _transposed_reach(r: _Reach, kernel: int, stride: int, dilation: int) -> _Reach:
    k = dilation * (kernel - 1) + 1
    a = max(k - stride, 0) // 2
    # input i feeds outputs s*i - a ... s*i - a + k - 1: output o reads ceil((o+a-k+1)/s) ... floor((o+a)/s)
    spans = [(-((k - 1 - o - a) // stride), (o + a) // stride) for o in range(stride)]
    return _phase_reach(r, stride, spans)


def _resize_reach(r: _Reach, factor: int, taps: int) -> _Reach:
    """Nearest (and sub-pixel shuffle, ``taps=1``) reads input floor(o / f); with half-pixel centres bilinear
    (``taps=2``) reads floor(src) and the next, bicubic (``taps=4``) one more on either side."""
    if taps == 1:
        return _phase_reach(r, factor, [(0, 0)] * factor)
    firsts = [math.floor(Fraction(2 * o + 1, 2 * factor) - Fraction(1, 2)) for o in range(factor)]
    return _phase_reach(r, factor, [(first - (taps // 2 - 1), first + taps // 2) for first in firsts])


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


#: Input pixels per axis that an UpSampling2D interpolation reads (lanczos: 2a taps of the a-lobe window).
_RESIZE_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4, "lanczos3": 6, "lanczos5": 10}


def _layer_reach(layer, reaches: list[tuple[_Reach, _Reach]]) -> tuple[_Reach, _Reach]:
    """How one layer changes the (height, width) reaches of its input(s)."""
    if isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                          keras.layers.SeparableConv2D)):
        kernel, stride, dilation = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
        if layer.padding != "same" and kernel != (1, 1):  # a 1x1 kernel pads nothing either way
            raise ArgumentError(f"layer {layer.name} uses padding={layer.padding!r}: only 'same' keeps the "
                                "image size, which tiling and per-pixel costs assume")
        step = _transposed_reach if isinstance(layer, keras.layers.Conv2DTranspose) else _conv_reach
        return tuple(step(reaches[0][ax], kernel[ax], stride[ax], dilation[ax]) for ax in (0, 1))
    if isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation in _RESIZE_TAPS:
        size = _pair(layer.size)
        return tuple(_resize_reach(reaches[0][ax], size[ax], _RESIZE_TAPS[layer.interpolation]) for ax in (0, 1))
    if isinstance(layer, (DepthToSpace, BilinearUpsample, BicubicUpsample)):
        factor = layer.block_size if isinstance(layer, DepthToSpace) else layer.factor
        taps = 4 if isinstance(layer, BicubicUpsample) else 2 if isinstance(layer, BilinearUpsample) else 1
        return tuple(_resize_reach(reaches[0][ax], factor, taps) for ax in (0, 1))
    if isinstance(layer, (*_POINTWISE, keras.layers.Dense, CropToReference)):
        return reaches[0]  # a crop's reference only lends its size
    if isinstance(layer, _MERGES):
        merged = []
        for ax in (0, 1):
            jumps = {r[ax].jump for r in reaches}
            if len(jumps) != 1:
                raise ArgumentError(f"layer {layer.name} merges feature maps of different resolutions {jumps}")
            merged.append(_Reach(jumps.pop(), max(r[ax].left for r in reaches), max(r[ax].right for r in reaches)))
        return tuple(merged)
    raise ArgumentError(f"cannot trace layer {layer.name} ({type(layer).__name__}) through the image grid: "
                        "pass tile_predict an overlap (and count its cost by hand)")


def _trace(model: keras.Model) -> tuple[dict[int, tuple[_Reach, _Reach]], Any]:
    """(id(tensor) -> (height, width) reaches, the output tensor) over a single-input, single-output functional model."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ArgumentError(f"model {model.name} is not a functional model with one image input and output: "
                            "pass tile_predict an overlap (and count its cost by hand)")
    start = _Reach(Fraction(1))
    reaches: dict[int, tuple[_Reach, _Reach]] = {id(inputs[0]): (start, start)}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        try:
            known = [reaches[id(t)] for t in ins]
        except KeyError:
            raise ArgumentError(f"layer {layer.name} of {model.name} is used more than once or out of order: "
                                "pass tile_predict an overlap") from None
        reaches[id(layer.output)] = _layer_reach(layer, known)
    return reaches, outputs[0]


def receptive_field_radius(model: keras.Model) -> int:
    """How far, in input pixels, an output pixel's value reaches beyond its own input pixel. Taught in chapter 5.

    Read from the layers (kernel sizes, strides, dilations, upsampling factors), not measured: d stride-1 3x3
    layers reach d pixels; the shipped 15+15 RED-Net 30. For a super-resolution model the reach is in
    low-resolution pixels. :func:`deconvlab.infer.tile_predict` discards this many pixels at inner tile edges.
    """
    reaches, output = _trace(model)
    return int(math.ceil(max(max(r.left, r.right, 0) for r in reaches[id(output)])))


def total_stride(model: keras.Model) -> int:
    """The grid every tile origin must sit on: lcm of all downsampling factors (and pad multiples) in the model.

    A stride-2 conv followed by another is 4; a model without strided layers is 1. Taught in chapter 5.
    """
    reaches, _ = _trace(model)
    jumps = [r.jump.numerator for pair in reaches.values() for r in pair]
    multiples = [layer.multiple for layer in model.layers if isinstance(layer, PadToMultiple)]
    return math.lcm(1, *jumps, *multiples)


def _kernel_macs(layer) -> Fraction:
    """Multiply-adds per output pixel of the layer itself (0 for layers without a kernel)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # every input pixel scatters the whole kernel: kh*kw*in*out multiply-adds per s*s output pixels
        sh, sw = _pair(layer.strides)
        return Fraction(_size(layer.kernel), sh * sw)
    if isinstance(layer, keras.layers.SeparableConv2D):
        return Fraction(_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        # a grouped conv's kernel already holds in/groups input channels
        return Fraction(_size(layer.kernel))
    return Fraction(0)


def macs_per_pixel(model: keras.Model) -> float:
    """Multiply-adds per OUTPUT pixel of every convolution, transposed convolution and per-pixel dense layer.
    Taught in chapter 5.

    A layer at half resolution costs a quarter per output pixel, a stride-s transposed conv kh*kw*in*out/s^2;
    activations, normalisation, additions and fixed resizes (bilinear, nearest, sub-pixel shuffle) count 0.
    For a super-resolution model the cost is per high-resolution pixel. The shipped 15+15 RED-Net (64 channels):
    1,033,344.
    """
    reaches, output = _trace(model)
    out_h, out_w = reaches[id(output)]
    total = Fraction(0)
    for layer in model.layers:
        macs = _kernel_macs(layer)
        if macs:
            h, w = reaches[id(layer.output)]
            total += macs * (out_h.jump / h.jump) * (out_w.jump / w.jump)
    return float(total)
