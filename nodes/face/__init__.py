"""Face analysis: detection, landmarks, tracking, head pose, alignment, action units and the overlay, each node
beside its maths."""
