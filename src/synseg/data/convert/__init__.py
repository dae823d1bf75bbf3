"""Converters of benchmark annotations into the label PNGs the evaluation reads
(`python -m synseg.data.convert context|coco_object ...`)."""
