"""Learning what tasks cost: history, features, training, prediction."""
