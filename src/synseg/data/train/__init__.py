"""The training stream: image-caption records from the toy world, tar shards or Hugging Face, decoded with
counted faults, tagged into caption categories, batched per rank and worker with resumable positions."""
