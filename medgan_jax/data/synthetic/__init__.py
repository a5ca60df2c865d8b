"""Embedded synthetic datasets: dermoscopy-like lesions and chest X-rays, rendered in memory
from a seed or written to disk in the real datasets' layouts (`python -m
medgan_jax.data.synthetic`). Numpy only: nothing here imports TensorFlow.

Modules: raster (shared helpers), lesions, cxr_findings (labels, prevalences, patient, study
and view parameters), cxr_render with cxr_frontal and cxr_lateral (the two views), cxr
(cxr_images), layouts (on disk), cli.
"""

from medgan_jax.data.synthetic.cli import main
from medgan_jax.data.synthetic.cxr import cxr_images
from medgan_jax.data.synthetic.cxr_findings import (
    CXR_IMAGES_PER_PATIENT,
    CXR_PREVALENCE,
    CXR_SPLITS,
    CxrTable,
)
from medgan_jax.data.synthetic.layouts import (
    JPEG_QUALITY,
    write_chexpert_layout,
    write_folder_layout,
)
from medgan_jax.data.synthetic.lesions import DEFAULT_LESION_OVERLAP, LESION_CLASSES, lesion_images

__all__ = [
    "CXR_IMAGES_PER_PATIENT",
    "CXR_PREVALENCE",
    "CXR_SPLITS",
    "DEFAULT_LESION_OVERLAP",
    "JPEG_QUALITY",
    "LESION_CLASSES",
    "CxrTable",
    "cxr_images",
    "lesion_images",
    "main",
    "write_chexpert_layout",
    "write_folder_layout",
]
