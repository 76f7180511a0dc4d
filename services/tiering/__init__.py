"""Tiering: classifies depositors by total deposit balance and assigns the maintenance team."""
