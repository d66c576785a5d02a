"""Audio: WAV files, the feature settings, and the two front ends (the bit-exact TFLM micro front
end as per-stage functions with a module on top, and torchaudio's MFCC)."""
