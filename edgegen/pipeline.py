"""Stable Diffusion (1.x / 2.x) on MLX: prompt → latents → image.

The pipeline mirrors diffusers' ``StableDiffusionPipeline`` step for step (same conditioning
layout, same guidance formula, same sampler interface) so that, given the same initial latents,
the images agree; see tests/test_pipeline.py.

Components are loaded on first use and kept warm, so one ``StableDiffusion`` object serves many
prompts (the terminal UI and batch rendering rely on that). :meth:`StableDiffusion.denoise`
yields after every step with the latents still lazy: the caller evaluates them, shows progress
and may stop early (cancellation is just leaving the loop).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import mlx.core as mx
import numpy as np

from edgegen.editing import Edit, paste_back
from edgegen.params import GenerationParams, PromptTruncatedWarning, portrait_size
from edgegen.samplers import make_sampler
from edgegen.sources import ModelSource


def warn_truncated(prompts: list[str], truncated: list[str], limit: int, stacklevel: int) -> None:
    """One :class:`PromptTruncatedWarning` per prompt the tokenizer cut at ``limit`` tokens."""
    for prompt, dropped in zip(prompts, truncated, strict=True):
        if dropped:
            message = (
                f"prompt {prompt[:40]!r}… is longer than the text encoder's {limit} tokens; "
                f"dropped: {dropped!r}"
            )
            warnings.warn(
                PromptTruncatedWarning(message, prompt, dropped), stacklevel=stacklevel + 1
            )


def prompt_rows(
    p: GenerationParams, count: int, prompts: list[tuple[str, str]] | None
) -> tuple[list[str], list[str]]:
    """The positive and negative prompt of each of ``count`` images."""
    if prompts is None:
        return [p.prompt] * count, [p.negative] * count
    if len(prompts) != count:
        raise ValueError(f"{len(prompts)} prompts for {count} images")
    return [a for a, _ in prompts], [b for _, b in prompts]


# Working memory per channel of the first block: per latent pixel and batch row for a UNet
# step (170 measured), per output pixel for a VAE decode (72 measured; 80 at 256²); see memory_needed.
UNET_BYTES = 200
UNET_FIXED = 64 * 2**20  # and what a step needs at any size (text context, time embedding, …)
VAE_BYTES = 88
DECODE_TILE = 64  # latents per side of a decode tile (VAE.decode_tiled's default)
ATTENTION_LIVE = 8  # the UNet's self-attention: assume 1/8 of its full score matrix is live


@dataclass
class Step:
    index: int  # 0-based step just completed
    total: int
    latents: mx.array  # NHWC, lazy until the caller evaluates it


class StableDiffusion:
    def __init__(self, source: ModelSource, dtype: mx.Dtype = mx.float32) -> None:
        self.source = source
        self.dtype = dtype
        self.name = source.name
        self.family = source.family
        self._tokenizer = None
        self._text_encoder = None
        self._unet = None
        self._vae = None
        vae_cfg = source.config("vae")
        unet_cfg = source.config("unet")
        # Each VAE down block but the last halves the resolution.
        self.vae_scale = 2 ** (len(vae_cfg.get("block_out_channels", [0, 0, 0, 0])) - 1)
        self.latent_channels = int(vae_cfg.get("latent_channels", 4))
        # A dedicated inpainting UNet also reads the mask and the masked picture's latents.
        self.inpainting = int(unet_cfg.get("in_channels", 4)) == 2 * self.latent_channels + 1
        self.native = int(unet_cfg.get("sample_size", 64)) * self.vae_scale
        self.scheduler_config = source.config("scheduler")

    # Components, loaded on first use and kept warm.
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self.source.load_tokenizer()
        return self._tokenizer

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            self._text_encoder = self.source.load_text_encoder(self.dtype)
        return self._text_encoder

    @property
    def unet(self):
        if self._unet is None:
            self._unet = self.source.load_unet(self.dtype)
        return self._unet

    @property
    def vae(self):
        if self._vae is None:
            self._vae = self.source.load_vae(self.dtype)  # float32 where self.dtype breaks it
        return self._vae

    @property
    def default_size(self) -> tuple[int, int]:
        return portrait_size(self.native)

    @property
    def defaults(self) -> dict[str, Any]:
        """Generation settings the model's converter recorded (a Turbo model: 1 step, no
        guidance); empty for a model without any (a diffusers folder, a non-Turbo artifact)."""
        return dict(self.source.defaults)

    def settings(self, steps: int | None, guidance: float | None) -> tuple[int, float]:
        """``steps`` and ``guidance`` where given, else the model's recorded :attr:`defaults`,
        else :class:`GenerationParams`' (a Turbo model run with 20 steps and guidance 7.5
        makes burnt images)."""
        d = self.defaults
        if steps is None:
            steps = int(d.get("steps", GenerationParams.steps))
        if guidance is None:
            guidance = float(d.get("guidance", GenerationParams.guidance))
        return steps, guidance

    def sampler_name(self, name: str | None) -> str:
        return make_sampler(name, self.scheduler_config).name

    # 1. Text conditioning
    def encode_text(self, prompts: list[str], clip_skip: int | None = None) -> mx.array:
        from edgegen.models.clip import encode_prompt_embeddings

        batch = self.tokenizer.encode(prompts)
        warn_truncated(prompts, batch.truncated, self.tokenizer.model_max_length, stacklevel=2)
        ids = mx.array(batch.ids)
        return encode_prompt_embeddings(self.text_encoder, ids, clip_skip).astype(self.dtype)

    def initial_noise(self, seed: int, width: int, height: int, count: int = 1) -> mx.array:
        """Gaussian latents (NHWC); image i of a batch uses seed + i, so each is reproducible."""
        shape = (height // self.vae_scale, width // self.vae_scale, self.latent_channels)
        return mx.stack(
            [mx.random.normal(shape, key=mx.random.key(seed + i)) for i in range(count)]
        )

    def resolve_size(self, p: GenerationParams) -> GenerationParams:
        w, h = self.default_size
        return replace(p, width=p.width or w, height=p.height or h)

    def conditioning(
        self,
        p: GenerationParams,
        count: int,
        cfg: bool,
        prompts: list[tuple[str, str]] | None = None,
    ) -> tuple[mx.array, dict[str, mx.array] | None]:
        """The UNet's text context (unconditional rows first when ``cfg``) and its added
        conditioning (None here; SDXL's pooled text and size ids, see edgegen.sdxl).
        ``prompts`` gives each of the ``count`` images its own (prompt, negative)."""
        positive, negative = prompt_rows(p, count, prompts)
        cond = self.encode_text(positive, p.clip_skip)
        if not cfg:
            return cond, None
        # clip_skip applies to the negative prompt too, as in A1111 (diffusers skips only the
        # positive one); without clip_skip both agree.
        uncond = self.encode_text(negative, p.clip_skip)
        return mx.concatenate([uncond, cond]), None

    # 2. Denoising loop
    def encode_image(self, images: np.ndarray) -> mx.array:
        """uint8 images (N, H, W, 3) → latents (NHWC): the mean of the VAE's posterior times its
        scaling factor. The mean, not a sample, so an edit depends on its seed alone."""
        x = mx.array(images.astype(np.float32) / 127.5 - 1.0)
        mean, _ = self.vae.encode(x.astype(self.dtype))
        return mean.astype(mx.float32) * self.vae.config.scaling_factor

    def denoise(
        self,
        p: GenerationParams,
        latents: mx.array | None = None,
        count: int = 1,
        edit: Edit | None = None,
        prompts: list[tuple[str, str]] | None = None,
    ) -> Iterator[Step]:
        """Yield after each sampler step. ``latents`` (NHWC, unscaled noise) replaces the
        seeded noise, as diffusers' ``latents=`` argument does. ``prompts`` (one (prompt,
        negative) per image of ``latents``) batches different prompts that share every other
        setting (edgegen batch does, for throughput); the sampler must be deterministic.

        With an ``edit`` the loop starts from its image: the last ``p.strength`` (default
        :attr:`Edit.default_strength`) of the schedule is run on the image's latents noised to that point (diffusers' img2img), and a
        mask confines the change (diffusers' inpaint). A strength too small for one step yields
        the image's own latents as the only step (``total`` 0).
        """
        if edit is not None:
            p = replace(p, width=edit.size[0], height=edit.size[1])
        p = self.resolve_size(p)
        p.validate()
        sampler = make_sampler(p.sampler, self.scheduler_config)
        sampler.set_timesteps(p.steps)
        if latents is None:
            latents = self.initial_noise(p.seed, p.width, p.height, count)
        count = latents.shape[0]
        cfg = p.guidance > 1.0
        self.check_memory(p.width, p.height, count, cfg)  # before the first step
        noise = latents.astype(mx.float32)
        n = len(sampler.timesteps)
        start, init, mask, extra = 0, None, None, None
        if edit is not None:
            strength = edit.default_strength if p.strength is None else p.strength
            start = n - min(int(n * strength), n)
            init = mx.broadcast_to(self.encode_image(edit.image[None]), noise.shape)
            if start == n:
                yield Step(0, 0, init)
                return
        if edit is not None and edit.mask is not None:
            # Binarized at latent resolution (nearest), as diffusers' mask processor does.
            binary = (edit.mask >= 0.5).astype(np.float32)
            mask = mx.array(binary[:: self.vae_scale, :: self.vae_scale][None, :, :, None])
            if self.inpainting:
                extra = self._inpaint_inputs(mask, edit.image, binary)
        elif self.inpainting:
            # An inpainting model asked for a picture from nothing: everything is masked.
            shape = (count, p.height // self.vae_scale, p.width // self.vae_scale, 1)
            blank = np.full((p.height, p.width, 3), 127.5, dtype=np.float32)
            extra = mx.concatenate([mx.ones(shape), self.encode_image(blank[None])], axis=-1)
        if init is None or (mask is not None and start == 0):
            x = noise * sampler.init_noise_sigma  # inpainting at full strength: pure noise
        else:
            x = sampler.add_noise(init, noise, start)
        if extra is not None:
            extra = mx.broadcast_to(extra, (count, *extra.shape[1:]))
            extra = mx.concatenate([extra, extra]) if cfg else extra
        context, added = self.conditioning(p, count, cfg, prompts)
        key = mx.random.key(p.seed)
        for i in range(start, n):
            t = sampler.timesteps[i]
            x_in = sampler.scale_model_input(x, i)
            x_in = mx.concatenate([x_in, x_in]) if cfg else x_in
            if extra is not None:
                x_in = mx.concatenate([x_in, extra], axis=-1)
            t_in = mx.full((x_in.shape[0],), float(t), dtype=mx.float32)
            eps = self.unet(x_in.astype(self.dtype), t_in, context, added).astype(mx.float32)
            if cfg:
                eps_uncond, eps_cond = mx.split(eps, 2)
                eps = eps_uncond + p.guidance * (eps_cond - eps_uncond)
            key, step_key = mx.random.split(key)
            x = sampler.step(eps, i, x, step_key)
            if mask is not None and not self.inpainting:
                # Outside the mask: the original, noised to the level the next step expects.
                known = sampler.add_noise(init, noise, i + 1) if i + 1 < n else init
                x = (1 - mask) * known + mask * x
            yield Step(i - start, n - start, x)

    def _inpaint_inputs(self, mask: mx.array, image: np.ndarray, binary: np.ndarray) -> mx.array:
        """An inpainting UNet's extra channels: the latent mask and the masked picture's
        latents (the picture with the masked pixels set to 0 in [-1, 1], i.e. mid grey)."""
        masked = image.astype(np.float32) * (1 - binary[..., None]) + 127.5 * binary[..., None]
        return mx.concatenate([mask, self.encode_image(masked[None])], axis=-1)

    # Memory, estimated before the work starts
    def memory_needed(self, width: int, height: int, count: int = 1, cfg: bool = True) -> dict:
        """Bytes of working memory (beyond the loaded weights) a generation needs, about:
        ``unet`` for a denoising step, ``decode`` for decoding the ``count`` images at once
        and ``decode_tiled`` for decoding them tile by tile. Calibrated on the built-in model
        (UNet 170, VAE 72–80 bytes per channel of the first block, measured with
        ``mx.get_peak_memory`` at 256² to 2048×4096), with headroom."""
        rows = count * (2 if cfg else 1)
        latent = (width // self.vae_scale) * (height // self.vae_scale)
        unet_cfg = self.source.config("unet")
        unet = UNET_FIXED + UNET_BYTES * int(unet_cfg["block_out_channels"][0]) * latent * rows
        # The first attention level's score blocks: MLX may hold many of them at once (a
        # 8192² image on the built-in model grew past 20 GB in its first step)
        kinds = unet_cfg.get("down_block_types", ["CrossAttnDownBlock2D"])
        level = next((i for i, k in enumerate(kinds) if "Attn" in k), len(kinds))
        tokens = latent // 4**level if level < len(kinds) else 0
        unet += tokens * tokens * 4 // ATTENTION_LIVE * rows
        vae_ch = int(self.source.config("vae").get("block_out_channels", [128])[0])
        chunk = min(latent, 4096)  # the VAE mid-block attends in query chunks (models.blocks)
        attention = 2 * chunk * latent * 4
        tile = (DECODE_TILE * self.vae_scale) ** 2
        images = width * height * 3 * 4 * 2 * count  # the float result and its blend weights
        return {
            "unet": unet,
            "decode": VAE_BYTES * vae_ch * width * height * count + attention,
            "decode_tiled": VAE_BYTES * vae_ch * min(tile, width * height)
            + 2 * chunk * min(latent, DECODE_TILE**2) * 4
            + images,
        }

    def check_memory(self, width: int, height: int, count: int = 1, cfg: bool = True) -> bool:
        """Refuse a generation this machine has not the memory for, in one line that says
        what it needs, what there is and what size would fit; True when the images must be
        decoded tile by tile to fit."""
        from edgegen.device import available_memory
        from edgegen.errors import UsageError

        have = available_memory()
        if have is None:
            return False
        budget = 0.8 * have
        need = self.memory_needed(width, height, count, cfg)
        if need["decode"] <= budget and need["unet"] <= budget:
            return False
        worst = max(need["unet"], need["decode_tiled"])
        if worst <= budget:
            return True
        fit_w, fit_h = width, height
        while fit_w > 64 and fit_h > 64:  # the largest size of this aspect that fits
            fit_w, fit_h = (
                max(64, int(fit_w * 0.9) // 64 * 64),
                max(64, int(fit_h * 0.9) // 64 * 64),
            )
            fit = self.memory_needed(fit_w, fit_h, count, cfg)
            if max(fit["unet"], fit["decode_tiled"]) <= budget:
                break
        images = f"{count} images of " if count > 1 else ""
        raise UsageError(
            f"generating {images}{width}x{height} needs about {worst / 2**30:.1f} GiB of "
            f"memory, more than the {have / 2**30:.1f} GiB available; {fit_w}x{fit_h} "
            "would fit (or close other programs)"
        )

    # 3. Decoding
    def decode_float(self, latents: mx.array) -> mx.array:
        """Latents (NHWC) → float32 images in [0, 1] (N, H, W, 3), decoded tile by tile when
        decoding them whole would not fit in memory (:meth:`check_memory`)."""
        scaling = self.vae.config.scaling_factor
        z = (latents / scaling).astype(self.dtype)
        n, h, w, _ = latents.shape
        tiled = self.check_memory(w * self.vae_scale, h * self.vae_scale, n, cfg=False)
        decode = self.vae.decode_tiled if tiled else self.vae.decode
        images = decode(z).astype(mx.float32)
        return mx.clip(images / 2 + 0.5, 0.0, 1.0)

    def decode(self, latents: mx.array, edit: Edit | None = None) -> np.ndarray:
        """Latents (NHWC) → uint8 images (N, H, W, 3), rounded as diffusers does; an
        outpainting ``edit`` gets its source pixels back (``editing.paste_back``)."""
        images = np.array(mx.round(self.decode_float(latents) * 255)).astype(np.uint8)
        if edit is not None and edit.keep is not None:
            images = np.stack([paste_back(im, edit) for im in images])
        return images

    def generate(
        self,
        p: GenerationParams,
        latents: mx.array | None = None,
        count: int = 1,
        edit: Edit | None = None,
    ) -> np.ndarray:
        """Run the whole loop and decode; the convenience form of :meth:`denoise`."""
        x = None
        for step in self.denoise(p, latents, count, edit):
            x = step.latents
            mx.eval(x)
        return self.decode(x, edit)
