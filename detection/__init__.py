"""Downstream detection: does fusion help? A compact FCOS detector on fused, visible, infrared or RGB-T input,
scored with COCO mAP (faster-coco-eval)."""
