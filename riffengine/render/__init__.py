"""Riffusion rendering: model loading, prompt and seed blending, img2img, the render worker."""
