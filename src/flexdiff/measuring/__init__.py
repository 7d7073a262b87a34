"""Measuring images: CLIP from a local folder (:mod:`.clip`), the feature networks FID is computed in, in a registry
(:mod:`.features`), and FID, rFID, the paired distance, PSNR and SSIM over them (:mod:`.metrics`). It knows nothing
of models or schedules: the search and the report hand it images."""
