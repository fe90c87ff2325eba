"""Script -> vertical video: storyboard, prompts, image cache, Ken Burns, captions, audio, encode.

The entry point is :func:`edgegen.video.render.render`; the image model and the voice are
injected (see ``ImageSource`` and ``Speaker`` there), so this package imports neither.
"""
