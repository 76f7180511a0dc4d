"""Profile: contact points, preferences, behaviour signals and early-warning callbacks."""
