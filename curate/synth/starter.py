"""The built-in starter library: typed pure functions, each with parameter ranges and a sentence template.

So that synthesis runs with no LLM at all. Each function is ordinary Python (tests call it directly)
and is also the exact source stored in `synth_functions` and executed in the sandbox: the decorator
only registers its metadata and is stripped from the stored source. A function uses nothing but its
arguments, `math` and `Fraction`, and raises ValueError outside its domain (the synthesiser records
that as a rejection).

Parameter kinds: `I(lo, hi)` a whole number, `N(lo, hi, step)` a real number drawn on a grid of `step`.
A template is a noun phrase with one `{param}` per parameter ("{percent}% of {whole}"); the problem
writer fills it with constants or with the names of earlier results.

`EXAMPLES` are small worked solutions that use several functions together; they give the library
its co-occurrence edges (the starter library has no seed problems) and are tests of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

TOPICS = ("arithmetic", "percentages", "ratios_rates", "unit_conversion", "geometry", "combinatorics",
          "number_theory", "algebra", "statistics")


@dataclass(frozen=True)
class ParamSpec:
    kind: str            # int | num
    lo: float
    hi: float
    step: float = 1.0


def I(lo: int, hi: int) -> ParamSpec:
    return ParamSpec("int", lo, hi, 1)


def N(lo: float, hi: float, step: float = 1.0) -> ParamSpec:
    return ParamSpec("num", lo, hi, step)


@dataclass(frozen=True)
class StarterSpec:
    function: Callable
    topic: str
    template: str
    params: dict[str, ParamSpec]
    returns: str          # int | num


STARTER: dict[str, StarterSpec] = {}


def starter(topic: str, template: str, returns: str, **params: ParamSpec):
    def register(function: Callable) -> Callable:
        STARTER[function.__name__] = StarterSpec(function, topic, template, params, returns)
        return function
    return register


# -- arithmetic -----------------------------------------------------------------------------------

@starter("arithmetic", "the total cost of {quantity} items at ${unit_price} each", "num",
         quantity=I(2, 40), unit_price=N(0.5, 60, 0.5))
def total_cost(quantity: int, unit_price: float) -> float:
    """Total cost of several items at one unit price."""
    if quantity < 0 or unit_price < 0:
        raise ValueError("quantity and price must be non-negative")
    return quantity * unit_price


@starter("arithmetic", "the sum of {a} and {b}", "num", a=N(1, 500), b=N(1, 500))
def add(a: float, b: float) -> float:
    """Sum of two numbers."""
    return a + b


@starter("arithmetic", "{a} minus {b}", "num", a=N(50, 1000), b=N(1, 50))
def subtract(a: float, b: float) -> float:
    """Difference of two numbers."""
    return a - b


@starter("arithmetic", "the product of {a} and {b}", "num", a=N(2, 50), b=N(2, 30))
def multiply(a: float, b: float) -> float:
    """Product of two numbers."""
    return a * b


@starter("arithmetic", "the amount each of {people} people gets when {total} is shared equally", "num",
         total=N(20, 2000, 10), people=I(2, 12))
def share_equally(total: float, people: int) -> float:
    """Equal share of a total among several people."""
    if people <= 0:
        raise ValueError("people must be positive")
    return total / people


@starter("arithmetic", "the change from paying ${paid} for something that costs ${cost}", "num",
         paid=N(20, 200, 10), cost=N(1, 20, 0.25))
def change_due(paid: float, cost: float) -> float:
    """Change returned after paying for a purchase."""
    if paid < cost:
        raise ValueError("the payment does not cover the cost")
    return paid - cost


# -- percentages ----------------------------------------------------------------------------------

@starter("percentages", "{percent}% of {whole}", "num", percent=N(5, 95, 5), whole=N(20, 1000, 10))
def percent_of(percent: float, whole: float) -> float:
    """A percentage of a quantity."""
    return percent * whole / 100


@starter("percentages", "the price of an item that costs ${price} after a {percent}% discount", "num",
         price=N(10, 500, 5), percent=N(5, 60, 5))
def discounted_price(price: float, percent: float) -> float:
    """Price after a percentage discount."""
    if not 0 <= percent <= 100:
        raise ValueError("a discount is between 0% and 100%")
    return price * (100 - percent) / 100


@starter("percentages", "{amount} increased by {percent}%", "num", amount=N(10, 1000, 10), percent=N(5, 50, 5))
def increase_by_percent(amount: float, percent: float) -> float:
    """A quantity after a percentage increase."""
    return amount * (100 + percent) / 100


@starter("percentages", "the percent change from {old} to {new}", "num", old=N(20, 400, 10), new=N(20, 400, 10))
def percent_change(old: float, new: float) -> float:
    """Percent change from an old value to a new one."""
    if old == 0:
        raise ValueError("the old value must not be zero")
    return (new - old) / old * 100


@starter("percentages", "the percentage that {part} is of {whole}", "num", part=N(1, 100), whole=N(100, 500, 10))
def percent_that(part: float, whole: float) -> float:
    """What percent a part is of a whole."""
    if whole == 0:
        raise ValueError("the whole must not be zero")
    return part / whole * 100


@starter("percentages", "the simple interest earned on ${principal} at {rate}% per year for {years} years",
         "num", principal=N(100, 10000, 100), rate=N(1, 12, 0.5), years=I(1, 10))
def simple_interest(principal: float, rate: float, years: int) -> float:
    """Simple interest on a principal."""
    return principal * rate * years / 100


@starter("percentages", "the value of ${principal} after {years} years at {rate}% interest compounded yearly",
         "num", principal=N(100, 5000, 100), rate=N(1, 10, 1), years=I(1, 6))
def compound_amount(principal: float, rate: float, years: int) -> float:
    """Value of an investment with yearly compound interest."""
    if years < 0:
        raise ValueError("years must be non-negative")
    return principal * (1 + rate / 100) ** years


# -- ratios and rates -----------------------------------------------------------------------------

@starter("ratios_rates", "the first share when {total} is split in the ratio {first}:{second}", "num",
         total=N(20, 1000, 10), first=I(1, 9), second=I(1, 9))
def ratio_share(total: float, first: int, second: int) -> float:
    """First part of a total split in a two-part ratio."""
    if first <= 0 or second <= 0:
        raise ValueError("ratio parts must be positive")
    return total * first / (first + second)


@starter("ratios_rates", "the distance covered at {speed} km/h in {hours} hours", "num",
         speed=N(5, 120, 5), hours=N(0.5, 10, 0.5))
def distance_travelled(speed: float, hours: float) -> float:
    """Distance from speed and time."""
    return speed * hours


@starter("ratios_rates", "the number of hours needed to travel {distance} km at {speed} km/h", "num",
         distance=N(10, 600, 10), speed=N(10, 120, 10))
def travel_time(distance: float, speed: float) -> float:
    """Time to cover a distance at a constant speed."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    return distance / speed


@starter("ratios_rates", "the amount per unit when {amount} is spread evenly over {units} units", "num",
         amount=N(10, 1000, 10), units=N(2, 50))
def unit_rate(amount: float, units: float) -> float:
    """Amount per unit."""
    if units == 0:
        raise ValueError("units must not be zero")
    return amount / units


@starter("ratios_rates", "the pay for {hours} hours of work at ${hourly_rate} per hour", "num",
         hours=N(1, 60, 0.5), hourly_rate=N(8, 60, 0.5))
def wages(hours: float, hourly_rate: float) -> float:
    """Pay for hours worked at an hourly rate."""
    return hours * hourly_rate


@starter("ratios_rates", "the number of hours two workers need together when one alone takes {time_a} hours "
         "and the other alone takes {time_b} hours", "num", time_a=N(1, 12), time_b=N(1, 12))
def combined_work_time(time_a: float, time_b: float) -> float:
    """Time for two workers together, from their times alone."""
    if time_a <= 0 or time_b <= 0:
        raise ValueError("times must be positive")
    return time_a * time_b / (time_a + time_b)


# -- unit conversion ------------------------------------------------------------------------------

@starter("unit_conversion", "{minutes} minutes expressed in hours", "num", minutes=N(15, 600, 15))
def minutes_to_hours(minutes: float) -> float:
    """Convert minutes to hours."""
    return minutes / 60


@starter("unit_conversion", "{hours} hours expressed in minutes", "num", hours=N(0.5, 24, 0.5))
def hours_to_minutes(hours: float) -> float:
    """Convert hours to minutes."""
    return hours * 60


@starter("unit_conversion", "{kilometres} kilometres expressed in metres", "num", kilometres=N(0.5, 50, 0.5))
def km_to_m(kilometres: float) -> float:
    """Convert kilometres to metres."""
    return kilometres * 1000


@starter("unit_conversion", "{kilograms} kilograms expressed in grams", "num", kilograms=N(0.25, 20, 0.25))
def kg_to_g(kilograms: float) -> float:
    """Convert kilograms to grams."""
    return kilograms * 1000


@starter("unit_conversion", "{feet} feet expressed in inches", "num", feet=N(1, 30))
def feet_to_inches(feet: float) -> float:
    """Convert feet to inches."""
    return feet * 12


@starter("unit_conversion", "{celsius} degrees Celsius expressed in degrees Fahrenheit", "num",
         celsius=N(-20, 40, 5))
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


@starter("unit_conversion", "the number of items in {dozens} dozen", "int", dozens=I(1, 20))
def dozens_to_items(dozens: int) -> int:
    """Number of items in some dozens."""
    return dozens * 12


@starter("unit_conversion", "the number of days in {weeks} weeks", "int", weeks=I(1, 52))
def weeks_to_days(weeks: int) -> int:
    """Number of days in some weeks."""
    return weeks * 7


# -- geometry -------------------------------------------------------------------------------------

@starter("geometry", "the area of a rectangle {length} units long and {width} units wide", "num",
         length=N(2, 50), width=N(1, 30))
def rectangle_area(length: float, width: float) -> float:
    """Area of a rectangle."""
    if length < 0 or width < 0:
        raise ValueError("sides must be non-negative")
    return length * width


@starter("geometry", "the perimeter of a rectangle {length} units long and {width} units wide", "num",
         length=N(2, 50), width=N(1, 30))
def rectangle_perimeter(length: float, width: float) -> float:
    """Perimeter of a rectangle."""
    if length < 0 or width < 0:
        raise ValueError("sides must be non-negative")
    return 2 * (length + width)


@starter("geometry", "the area of a triangle with base {base} and height {height}", "num",
         base=N(2, 40), height=N(2, 40))
def triangle_area(base: float, height: float) -> float:
    """Area of a triangle from base and height."""
    if base < 0 or height < 0:
        raise ValueError("base and height must be non-negative")
    return base * height / 2


@starter("geometry", "the area of a circle of radius {radius}", "num", radius=N(1, 20))
def circle_area(radius: float) -> float:
    """Area of a circle."""
    if radius < 0:
        raise ValueError("radius must be non-negative")
    return math.pi * radius ** 2


@starter("geometry", "the volume of a box {length} by {width} by {height} units", "num",
         length=N(1, 20), width=N(1, 20), height=N(1, 20))
def box_volume(length: float, width: float, height: float) -> float:
    """Volume of a rectangular box."""
    if min(length, width, height) < 0:
        raise ValueError("sides must be non-negative")
    return length * width * height


@starter("geometry", "the hypotenuse of a right triangle with legs {a} and {b}", "num", a=N(3, 30), b=N(3, 30))
def hypotenuse(a: float, b: float) -> float:
    """Hypotenuse of a right triangle."""
    if a < 0 or b < 0:
        raise ValueError("legs must be non-negative")
    return math.sqrt(a * a + b * b)


@starter("geometry", "the sum of the interior angles, in degrees, of a polygon with {sides} sides", "int",
         sides=I(3, 12))
def interior_angle_sum(sides: int) -> int:
    """Sum of the interior angles of a polygon."""
    if sides < 3:
        raise ValueError("a polygon has at least 3 sides")
    return (sides - 2) * 180


# -- combinatorics --------------------------------------------------------------------------------

@starter("combinatorics", "the number of ways to arrange {n} different books in a row", "int", n=I(2, 8))
def arrangements(n: int) -> int:
    """Number of orderings of n distinct objects."""
    if n < 0 or n > 20:
        raise ValueError("n must be between 0 and 20")
    return math.factorial(n)


@starter("combinatorics", "the number of ways to choose {k} people from a group of {n}", "int",
         n=I(4, 20), k=I(1, 4))
def choose(n: int, k: int) -> int:
    """Number of ways to choose k of n distinct items."""
    if not 0 <= k <= n or n > 1000:
        raise ValueError("need 0 <= k <= n <= 1000")
    return math.comb(n, k)


@starter("combinatorics", "the number of ways to award {k} different prizes among {n} people, at most one each",
         "int", n=I(3, 15), k=I(1, 3))
def ordered_selections(n: int, k: int) -> int:
    """Number of ordered selections of k from n distinct items."""
    if not 0 <= k <= n or n > 1000:
        raise ValueError("need 0 <= k <= n <= 1000")
    return math.perm(n, k)


@starter("combinatorics", "the number of handshakes when each of {people} people shakes hands once with "
         "every other person", "int", people=I(3, 40))
def handshakes(people: int) -> int:
    """Number of handshakes among a group."""
    if people < 0:
        raise ValueError("people must be non-negative")
    return people * (people - 1) // 2


@starter("combinatorics", "the number of outfits that can be made from {shirts} shirts and {trousers} pairs "
         "of trousers", "int", shirts=I(2, 12), trousers=I(2, 8))
def outfits(shirts: int, trousers: int) -> int:
    """Number of shirt-and-trousers combinations."""
    if shirts < 0 or trousers < 0:
        raise ValueError("counts must be non-negative")
    return shirts * trousers


# -- number theory --------------------------------------------------------------------------------

@starter("number_theory", "the greatest common divisor of {a} and {b}", "int", a=I(6, 200), b=I(6, 200))
def gcd_of(a: int, b: int) -> int:
    """Greatest common divisor of two whole numbers."""
    return math.gcd(a, b)


@starter("number_theory", "the least common multiple of {a} and {b}", "int", a=I(2, 30), b=I(2, 30))
def lcm_of(a: int, b: int) -> int:
    """Least common multiple of two whole numbers."""
    return math.lcm(a, b)


@starter("number_theory", "the sum of the digits of {n}", "int", n=I(10, 99999))
def digit_sum(n: int) -> int:
    """Sum of the decimal digits of a whole number."""
    return sum(int(d) for d in str(abs(n)))


@starter("number_theory", "the number of positive divisors of {n}", "int", n=I(2, 500))
def divisor_count(n: int) -> int:
    """Number of positive divisors of a whole number."""
    if n <= 0 or n > 10 ** 9:
        raise ValueError("n must be between 1 and 10**9")
    count = 0
    d = 1
    while d * d <= n:
        if n % d == 0:
            count += 1 if d * d == n else 2
        d += 1
    return count


@starter("number_theory", "the remainder when {a} is divided by {b}", "int", a=I(10, 1000), b=I(2, 12))
def remainder(a: int, b: int) -> int:
    """Remainder of a whole-number division."""
    if b == 0:
        raise ValueError("division by zero")
    return a % b


@starter("number_theory", "the sum of the whole numbers from 1 to {n}", "int", n=I(5, 200))
def sum_to_n(n: int) -> int:
    """Sum of 1 through n."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return n * (n + 1) // 2


@starter("number_theory", "the number of multiples of {k} from 1 to {limit}", "int", limit=I(20, 1000), k=I(2, 15))
def multiples_up_to(limit: int, k: int) -> int:
    """How many multiples of k are at most a limit."""
    if k <= 0:
        raise ValueError("k must be positive")
    return limit // k


# -- algebra --------------------------------------------------------------------------------------

@starter("algebra", "the value of x that solves {a}x + {b} = {c}", "num", a=N(2, 12), b=N(-20, 20), c=N(-50, 100))
def solve_linear(a: float, b: float, c: float) -> Fraction:
    """Solution of a*x + b = c."""
    if a == 0:
        raise ValueError("a must not be zero")
    return (Fraction(c) - Fraction(b)) / Fraction(a)


@starter("algebra", "the value of {slope}x + {intercept} when x = {x}", "num",
         slope=N(-10, 10), intercept=N(-20, 20), x=N(-10, 10))
def evaluate_linear(slope: float, intercept: float, x: float) -> float:
    """Value of a linear expression at a point."""
    return slope * x + intercept


@starter("algebra", "term number {n} of the arithmetic sequence that starts at {first} and goes up by "
         "{difference} each time", "num", first=N(1, 50), difference=N(1, 12), n=I(2, 40))
def arithmetic_term(first: float, difference: float, n: int) -> float:
    """n-th term of an arithmetic sequence."""
    if n < 1:
        raise ValueError("n must be at least 1")
    return first + (n - 1) * difference


@starter("algebra", "the sum of the first {n} terms of the arithmetic sequence that starts at {first} and goes "
         "up by {difference} each time", "num", first=N(1, 50), difference=N(1, 12), n=I(2, 40))
def arithmetic_series(first: float, difference: float, n: int) -> float:
    """Sum of the first n terms of an arithmetic sequence."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return n * (2 * first + (n - 1) * difference) / 2


@starter("algebra", "term number {n} of the geometric sequence that starts at {first} and is multiplied by "
         "{ratio} each time", "num", first=N(1, 20), ratio=I(2, 4), n=I(1, 8))
def geometric_term(first: float, ratio: int, n: int) -> float:
    """n-th term of a geometric sequence."""
    if n < 1 or n > 60:
        raise ValueError("n must be between 1 and 60")
    return first * ratio ** (n - 1)


@starter("algebra", "the square of {x}", "num", x=N(2, 40))
def square(x: float) -> float:
    """Square of a number."""
    return x * x


@starter("algebra", "the square root of {x}", "num", x=N(4, 400, 4))
def square_root(x: float) -> float:
    """Square root of a non-negative number."""
    if x < 0:
        raise ValueError("x must be non-negative")
    return math.sqrt(x)


# -- statistics -----------------------------------------------------------------------------------

@starter("statistics", "the mean of {a}, {b} and {c}", "num", a=N(0, 100), b=N(0, 100), c=N(0, 100))
def mean_of_three(a: float, b: float, c: float) -> float:
    """Arithmetic mean of three numbers."""
    return (a + b + c) / 3


@starter("statistics", "the median of {a}, {b} and {c}", "num", a=N(0, 100), b=N(0, 100), c=N(0, 100))
def median_of_three(a: float, b: float, c: float) -> float:
    """Median of three numbers."""
    return sorted([a, b, c])[1]


@starter("statistics", "the range of {a}, {b} and {c}", "num", a=N(0, 100), b=N(0, 100), c=N(0, 100))
def range_of_three(a: float, b: float, c: float) -> float:
    """Range (largest minus smallest) of three numbers."""
    return max(a, b, c) - min(a, b, c)


@starter("statistics", "the score needed on a third test to average {target} after scoring {first} and {second}",
         "num", first=N(50, 100), second=N(50, 100), target=N(60, 95))
def score_needed(first: float, second: float, target: float) -> float:
    """Third value needed for three values to reach a target mean."""
    return 3 * target - first - second


@starter("statistics", "the weighted average of {a} with weight {weight_a} and {b} with weight {weight_b}",
         "num", a=N(0, 100), weight_a=I(1, 5), b=N(0, 100), weight_b=I(1, 5))
def weighted_average(a: float, weight_a: int, b: float, weight_b: int) -> float:
    """Weighted average of two values."""
    if weight_a + weight_b == 0:
        raise ValueError("weights must not sum to zero")
    return (a * weight_a + b * weight_b) / (weight_a + weight_b)


@starter("statistics", "the probability of drawing a red marble from a bag of {red} red and {blue} blue marbles",
         "num", red=I(1, 20), blue=I(1, 20))
def probability_red(red: int, blue: int) -> Fraction:
    """Probability of one outcome among equally likely ones."""
    if red < 0 or blue < 0 or red + blue == 0:
        raise ValueError("counts must be non-negative and not both zero")
    return Fraction(red, red + blue)


# -- worked examples (co-occurrence edges) ----------------------------------------------------------

EXAMPLES: dict[str, str] = {
    "shopping": "def solution():\n    cost = total_cost(quantity=12, unit_price=3.5)\n"
                "    after = discounted_price(price=cost, percent=10)\n    return change_due(paid=50, cost=after)\n",
    "wages-tax": "def solution():\n    pay = wages(hours=38, hourly_rate=15)\n"
                 "    return percent_of(percent=80, whole=pay)\n",
    "trip": "def solution():\n    d = distance_travelled(speed=60, hours=2.5)\n    m = km_to_m(kilometres=d)\n"
            "    return travel_time(distance=d, speed=50)\n",
    "savings": "def solution():\n    grown = compound_amount(principal=1000, rate=5, years=2)\n"
               "    interest = simple_interest(principal=1000, rate=5, years=2)\n    return subtract(a=grown, b=interest)\n",
    "garden": "def solution():\n    area = rectangle_area(length=12, width=8)\n"
              "    edge = rectangle_perimeter(length=12, width=8)\n    return add(a=area, b=edge)\n",
    "ramp": "def solution():\n    h = hypotenuse(a=6, b=8)\n    return triangle_area(base=6, height=8) + h\n",
    "committee": "def solution():\n    groups = choose(n=10, k=3)\n    orders = ordered_selections(n=10, k=3)\n"
                 "    return orders // groups\n",
    "party": "def solution():\n    guests = dozens_to_items(dozens=2)\n    return handshakes(people=guests)\n",
    "wardrobe": "def solution():\n    looks = outfits(shirts=5, trousers=3)\n    return arrangements(n=4) + looks\n",
    "tiles": "def solution():\n    g = gcd_of(a=48, b=36)\n    l = lcm_of(a=4, b=6)\n    return remainder(a=g * l, b=7)\n",
    "digits": "def solution():\n    s = sum_to_n(n=30)\n    return digit_sum(n=s) + divisor_count(n=s)\n",
    "calendar": "def solution():\n    days = weeks_to_days(weeks=6)\n    return multiples_up_to(limit=days, k=4)\n",
    "sequence": "def solution():\n    t = arithmetic_term(first=3, difference=4, n=10)\n"
                "    return arithmetic_series(first=3, difference=4, n=10) - square(x=t)\n",
    "equation": "def solution():\n    x = solve_linear(a=3, b=5, c=20)\n    return evaluate_linear(slope=2, intercept=1, x=x)\n",
    "growth": "def solution():\n    t = geometric_term(first=5, ratio=2, n=4)\n    return square_root(x=t * 10)\n",
    "grades": "def solution():\n    m = mean_of_three(a=82, b=90, c=76)\n    need = score_needed(first=82, second=90, target=85)\n"
              "    return weighted_average(a=m, weight_a=2, b=need, weight_b=1)\n",
    "spread": "def solution():\n    r = range_of_three(a=12, b=30, c=21)\n    return median_of_three(a=12, b=30, c=21) - r\n",
    "marbles": "def solution():\n    p = probability_red(red=6, blue=4)\n    return percent_that(part=p * 100, whole=100)\n",
    "prices": "def solution():\n    new = increase_by_percent(amount=80, percent=25)\n    return percent_change(old=80, new=new)\n",
    "recipe": "def solution():\n    grams = kg_to_g(kilograms=1.5)\n    part = ratio_share(total=grams, first=2, second=3)\n"
              "    return unit_rate(amount=part, units=4)\n",
    "painting": "def solution():\n    t = combined_work_time(time_a=6, time_b=3)\n    return hours_to_minutes(hours=t)\n",
    "cooking": "def solution():\n    h = minutes_to_hours(minutes=90)\n    return multiply(a=h, b=share_equally(total=120, people=4))\n",
    "weather": "def solution():\n    f = celsius_to_fahrenheit(celsius=25)\n    return subtract(a=f, b=feet_to_inches(feet=2))\n",
    "shapes": "def solution():\n    angles = interior_angle_sum(sides=6)\n    return angles / 6 + circle_area(radius=1) * 0\n",
    "storage": "def solution():\n    v = box_volume(length=2, width=3, height=4)\n    return share_equally(total=v, people=3)\n",
}
