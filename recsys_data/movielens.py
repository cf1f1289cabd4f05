"""What MovieLens data looks like: its time range, id span, genres and rating distribution (the targets the
generator matches)."""
from __future__ import annotations

import numpy as np

ML_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09 11:46:49 UTC, first rating in ML-25M
ML_LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21 09:15:03 UTC, last rating in ML-25M
HALF_STARS_FROM = 1_045_526_400  # 2003-02-18: MovieLens added half-star ratings
ML_ID_SPAN = 209_171 / 59_047  # largest movieId / rated movies in ML-25M

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
# Movies per genre in ml-latest-small.
GENRE_WEIGHTS = np.array([1828, 1263, 611, 664, 3756, 1199, 440, 4361, 779, 87, 978, 158, 334, 573, 1596, 980,
                          1894, 382, 167], dtype=np.float64)
GENRE_COUNT_PROBS = np.array([0.29, 0.33, 0.24, 0.10, 0.03, 0.01])  # 1..6 genres per movie
NO_GENRES = "(no genres listed)"

RATING_LABELS = ("", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")  # index = half stars
# ML-25M's rating distribution (0.5 .. 5.0 stars), and the same folded onto whole stars (a half star's mass split
# between its two neighbours, 0.5 going to 1.0). Half-star ratings take whatever mix of the two makes the total ML's.
ML_RATING_PROBS = np.array([1.57, 3.12, 1.60, 6.64, 4.94, 19.6, 12.6, 26.6, 8.5, 14.5]) / 99.67
WHOLE_STAR_PROBS = np.array([ML_RATING_PROBS[0] + ML_RATING_PROBS[1] + ML_RATING_PROBS[2] / 2,
                             ML_RATING_PROBS[2] / 2 + ML_RATING_PROBS[3] + ML_RATING_PROBS[4] / 2,
                             ML_RATING_PROBS[4] / 2 + ML_RATING_PROBS[5] + ML_RATING_PROBS[6] / 2,
                             ML_RATING_PROBS[6] / 2 + ML_RATING_PROBS[7] + ML_RATING_PROBS[8] / 2,
                             ML_RATING_PROBS[8] / 2 + ML_RATING_PROBS[9]])
