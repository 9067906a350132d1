"""What happens to a trained model: found by reference (registry, run or file), evaluated,
asked for predictions, exported."""
