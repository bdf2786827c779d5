"""Seeded generator of short children's stories in simple English: the embedded corpus.

    python storygen.py --n 3 --seed 0          # print 3 stories, the vocabulary size and stories/s

Story i of a split is a pure function of (seed, split, i). A story is a list of whitespace-free
tokens from a closed vocabulary (`VOCAB`): lowercase words, capitalized proper names (and week
days) and separate punctuation, so a word-level tokenizer is exact. `detokenize` makes readable text.

How a story is made: one slot table is drawn per story (a protagonist with gender and pronouns, a
friend, a parent, a pet, a neighbour, a favourite object and its colour, a place, numbers and many
schema-specific fillers); then an opening, a few introductory facts, the steps of one of about
forty plot schemas (each step one of several alternatives, with inline variations) and an ending are joined
and formatted with the table. What the opening introduces ("Mia", "her red kite", "the park",
"five apples") therefore comes back much later, correctly inflected, which rewards long context.
Several kinds of structure are there to be learned at different speeds: local grammar and
phrasing; entity knowledge (a fox has a bushy red tail, the zoo has giraffes, a sunflower seed
grows into a tall yellow sunflower, a puppy chews on everything); small arithmetic (five apples,
two given away, three left); and names, objects and activities drawn with Zipf-like frequencies,
so that their long tail keeps being learned late in training.
"""
from __future__ import annotations

import bisect
import random
import re
import time
from typing import Iterator

# ----------------------------------------------------------------------------- word tables
# Names are disjoint between the lists, so a name alone fixes the pronouns.
GIRLS = """Abby Ada Alice Alma Amber Amelia Amy Anna Annie April Ava Bella Beth Bonnie Brooke Carla
Carmen Chloe Clara Cora Daisy Dana Della Diana Dora Edie Elena Eliza Ella Ellie Elsa Emily Emma Erin
Eva Evie Faith Fay Fern Fiona Flora Frida Gemma Gina Grace Greta Hana Hannah Harper Hazel Heidi Helen
Hope Ida Ivy Jade Jane Jenny Jess Jill Joy Julia June Kate Katie Kira Lana Laura Layla Lea Leah Lena
Lila Lily Lina Lisa Liz Lola Lora Lucy Luna Mabel Maggie Maisie Maria Martha Mary Maya Megan Mia
Millie Mina Molly Nadia Nancy Naomi Nell Nina Nora Olive Olivia Paige Pam Penny Pia Pippa Polly
Poppy Quinn Rachel Rita Rosa Rose Rosie Ruby Ruth Sadie Sally Sara Sasha Selma Sienna Sofia Sophie
Stella Sue Susie Tara Tess Tessa Tia Tilly Una Vera Violet Wendy Willa Yara Zara Zoe Zelda Iris
Hattie Lottie Dottie Meg Ginny Becca Cleo Opal Pearl Queenie Romy Skye Tina Trudy Vicky Winnie
Xena Yasmin Adele Bea Cassie Dina Elsie Freya Gwen Holly Isla Josie Kitty Lulu Minnie Nola""".split()
BOYS = """Aaron Adam Alan Alex Alfie Andy Archie Arlo Arthur Ben Benny Bill Billy Bobby Brian Bruno
Caleb Carl Carlos Charlie Chris Colin Dan Danny David Dean Dev Dylan Eddie Eli Elliot Emil Eric Ethan
Evan Felix Finn Fred Freddie Gabe George Gus Hank Harry Henry Hugo Ian Igor Isaac Ivan Jack Jacob
Jake Jamie Jasper Jay Jim Jimmy Joe Joel Joey John Jonah Jonas Josh Jude Kai Karl Ken Kevin Kit Leo
Leon Levi Liam Lou Louis Luca Lucas Luke Marco Mark Marty Matt Max Micky Mike Milo Nate Ned Nick Noah
Oliver Ollie Omar Oscar Otis Owen Paul Pete Peter Phil Ralph Ray Reggie Rex Rico Rob Robin Roger Ron
Rory Roy Ruben Rudy Rufus Sam Sammy Scott Seth Simon Stan Steve Ted Teddy Theo Tim Timmy Toby Todd
Tom Tommy Tony Victor Vince Wade Walt Wes Will Wyatt Zack Zeke Abe Barney Cody Dom Ernie Frank Gil
Hal Harvey Jed Jonty Lenny Monty Norm Ozzie Percy Quentin Rocco Sid Tobias Ulric Vic Wally Yuri Ziggy
Angus Bert Cyril Dexter Enzo Fergus Gordon Hamish Jules Kenny Lyle Mason Neil Orson Pablo""".split()
PET_NAMES = """Spot Fluffy Buddy Patch Biscuit Muffin Pepper Ginger Socks Boots Whiskers Snowball Peanut
Cookie Pickles Noodle Bean Button Sparky Rusty Shadow Smokey Mittens Tiger Buster Bandit Pumpkin
Sunny Lucky Fudge Toffee Waffles Nugget Scout Bubbles Pebbles Jellybean Marshmallow Doodle Sprinkles
Domino Bolt Dash Fuzzy Cocoa Puddle Pretzel Chip Squeak Wiggles Tinker Bingo Bouncer Mango Pip Dotty
Flopsy Jingles Paws""".split()
SURNAMES = [s for s in """Brown Green Gray Hill Wood Stone Bell Reed Lake Field Baker Parker Rivers Hart
Frost Moss Berry Snow Oak Wells Brook Little Long Marsh Pond Meadows Cherry Bloom Ash Birch Plum Sparrow
Finch Lark Dove""".split()]
# Animal protagonists and friends, each with the feature a reader learns to expect.
ANIMALS = [("bunny", "long soft ears"), ("fox", "a bushy red tail"), ("mouse", "a tiny pink nose"),
           ("squirrel", "a big fluffy tail"), ("duck", "little orange feet"), ("hedgehog", "soft little spikes"),
           ("owl", "big round eyes"), ("frog", "long green legs"), ("pig", "a curly pink tail"),
           ("lamb", "soft white wool"), ("elephant", "big floppy ears"), ("tiger", "orange and black stripes"),
           ("monkey", "a long curly tail"), ("raccoon", "a striped tail"), ("otter", "shiny brown fur"),
           ("penguin", "a round white tummy"), ("turtle", "a hard green shell"), ("deer", "long thin legs"),
           ("bear", "thick brown fur"), ("koala", "fluffy gray ears"), ("panda", "black and white fur"),
           ("badger", "a black and white face"), ("mole", "big strong paws"), ("goat", "two little horns")]
CHILD_FEATS = ["curly red hair", "long brown hair", "short black hair", "bright blue eyes", "big brown eyes",
               "rosy cheeks", "golden curls", "a loud laugh", "a little button nose", "straight yellow hair",
               "dark curly hair", "green eyes", "round glasses", "a missing front tooth", "lots of freckles"]
# (pet, its sounds, its habits)
PETS = [("dog", ("barked", "woofed"), ("loved to fetch sticks", "liked to dig holes in the yard")),
        ("puppy", ("barked", "yipped"), ("chewed on everything", "loved to chase bubbles")),
        ("cat", ("meowed", "purred"), ("liked to nap in the sun", "liked to sit on the windowsill")),
        ("kitten", ("mewed", "meowed"), ("chased balls of yarn", "liked to hide in boxes"))]
PARENTS = [("mom", True), ("dad", False), ("grandma", True), ("grandpa", False)]
COLORS = "red blue green yellow pink purple orange white black brown gray silver".split()
# (object, what it is like)
OBJECTS = [("ball", "bounced very high"), ("kite", "had a long ribbon tail"), ("doll", "had a pretty dress and tiny shoes"),
           ("robot", "had blinking lights"), ("puppet", "had funny button eyes"), ("drum", "went boom , boom"),
           ("whistle", "made a loud , happy sound"), ("blanket", "was soft and warm"), ("marble", "was shiny and round"),
           ("bucket", "was just right for carrying sand"), ("backpack", "had lots of pockets"),
           ("yo-yo", "went up and down on its string"), ("crown", "had shiny jewels on it"),
           ("flashlight", "made a bright circle of light"), ("teddy bear", "had soft fur and a little bow"),
           ("toy car", "had four little wheels"), ("toy boat", "could float in the bath"), ("toy train", "had a little whistle"),
           ("music box", "played a sweet little song"), ("toy truck", "could carry tiny rocks"),
           ("toy plane", "had two long wings"), ("toy dinosaur", "had big sharp teeth"), ("jump rope", "had wooden handles"),
           ("rag doll", "had yarn hair"), ("stuffed bunny", "had long floppy ears"), ("toy horse", "had a soft mane"),
           ("wooden sword", "was light and smooth"), ("little bell", "went ding , ding"), ("toy rocket", "had a pointy nose")]
# (place, where in it, what it looks like)
PLACES = [("park", "in the park", "the park had tall trees and a big slide"),
          ("garden", "in the garden", "the garden was full of flowers"),
          ("playground", "at the playground", "the playground had swings and a sandbox"),
          ("meadow", "in the meadow", "the meadow was full of tall grass and flowers"),
          ("beach", "at the beach", "the beach had soft sand and big waves"),
          ("woods", "in the woods", "the woods were full of tall trees and birds"),
          ("field", "in the field", "the field was wide and green"),
          ("pond", "by the pond", "the pond had lily pads and frogs"),
          ("lake", "by the lake", "the lake was calm and blue"),
          ("hill", "on the hill", "the hill was high and green"),
          ("yard", "in the yard", "the yard had a big old tree"),
          ("orchard", "in the orchard", "the orchard was full of apple trees"),
          ("river", "by the river", "the river sparkled in the sun"),
          ("square", "in the square", "the square had a fountain in the middle")]
HOMES = ["a little house", "a small cottage", "a big old house", "a cozy house", "a tall house",
         "a tiny cabin", "a yellow house", "a blue house", "a house with a red door", "a little farmhouse",
         "a white cottage", "a house with a green roof"]
# (where the home is, what can be seen from its window)
HOME_WHERE = [("near the sea", "the blue sea and the boats"), ("by a river", "the river running by"),
              ("at the edge of the woods", "the tall dark trees"), ("in a quiet village", "the roofs of the village"),
              ("in a busy town", "the busy street below"), ("on top of a hill", "the whole valley"),
              ("next to a big park", "the swings in the park"), ("near the mountains", "the snowy mountain tops"),
              ("at the end of a long road", "the long road and the fields"), ("by a little lake", "the ducks on the lake"),
              ("in the middle of the city", "the tall buildings and the lights")]
SPOTS = ["under the bed", "behind the sofa", "in the toy box", "under the table", "behind the door",
         "in the closet", "under the stairs", "behind the curtains", "in the laundry basket",
         "under the pillows", "in the kitchen", "in the bathtub", "under a blanket", "behind the big chair",
         "in the attic", "in a cupboard"]
OUT_SPOTS = ["behind the shed", "under the car", "in the bushes", "by the gate", "near the old tree",
             "in the garden", "down the street", "behind the fence", "under the porch", "at the park",
             "by the mailbox", "in the field"]
# (food, plural, what it tastes like)
FOODS = [("apple", "apples", "sweet and crunchy"), ("banana", "bananas", "soft and sweet"),
         ("cookie", "cookies", "sweet and crumbly"), ("cupcake", "cupcakes", "sweet and pretty"),
         ("strawberry", "strawberries", "red and juicy"), ("orange", "oranges", "juicy and bright"),
         ("pear", "pears", "soft and juicy"), ("carrot", "carrots", "crunchy and sweet"), ("muffin", "muffins", "warm and soft"),
         ("cherry", "cherries", "small and sweet"), ("peach", "peaches", "soft and fuzzy"), ("plum", "plums", "purple and sweet"),
         ("pancake", "pancakes", "warm and fluffy"), ("sandwich", "sandwiches", "big and tasty"),
         ("grape", "grapes", "small and juicy"), ("cracker", "crackers", "salty and crunchy")]
MEALS = """sandwiches grapes cheese cookies carrots strawberries crackers apples muffins cherries bread
pears plums cupcakes""".split()
INGREDIENTS = "flour sugar eggs butter milk honey berries nuts oats chocolate raisins cinnamon apples bananas".split()
BAKES = [("a cake", "cake", "was", "it"), ("some cookies", "cookies", "were", "them"),
         ("some muffins", "muffins", "were", "them"), ("a pie", "pie", "was", "it"),
         ("some bread", "bread", "was", "it"), ("some cupcakes", "cupcakes", "were", "them"),
         ("an apple pie", "apple pie", "was", "it"), ("some buns", "buns", "were", "them"),
         ("a birthday cake", "birthday cake", "was", "it")]
NUM = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
       "seventeen").split()  # the largest number a story needs is 9 + 8
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
# (base, past, -ing): the same activity is proposed in dialogue, then narrated in the past.
ACTS = [("play tag", "played tag", "playing tag"), ("play catch", "played catch", "playing catch"),
        ("fly kites", "flew kites", "flying kites"), ("jump rope", "jumped rope", "jumping rope"),
        ("climb trees", "climbed trees", "climbing trees"), ("draw pictures", "drew pictures", "drawing pictures"),
        ("sing songs", "sang songs", "singing songs"), ("read books", "read books", "reading books"),
        ("chase butterflies", "chased butterflies", "chasing butterflies"),
        ("pick flowers", "picked flowers", "picking flowers"), ("play ball", "played ball", "playing ball"),
        ("skip stones", "skipped stones", "skipping stones"), ("make mud pies", "made mud pies", "making mud pies"),
        ("blow bubbles", "blew bubbles", "blowing bubbles"), ("dance", "danced", "dancing"),
        ("build a fort", "built a fort", "building a fort"), ("look for bugs", "looked for bugs", "looking for bugs"),
        ("play pretend", "played pretend", "playing pretend"), ("throw a frisbee", "threw a frisbee", "throwing a frisbee"),
        ("feed the ducks", "fed the ducks", "feeding the ducks"), ("run races", "ran races", "running races"),
        ("play with blocks", "played with blocks", "playing with blocks"), ("tell jokes", "told jokes", "telling jokes"),
        ("watch the clouds", "watched the clouds", "watching the clouds"), ("hop like frogs", "hopped like frogs", "hopping like frogs"),
        ("catch leaves", "caught leaves", "catching leaves"), ("dig for worms", "dug for worms", "digging for worms"),
        ("play music", "played music", "playing music"), ("make paper boats", "made paper boats", "making paper boats"),
        ("hunt for shells", "hunted for shells", "hunting for shells"), ("roll in the leaves", "rolled in the leaves", "rolling in the leaves"),
        ("play hopscotch", "played hopscotch", "playing hopscotch")]
SKILLS = [("ride a bike", "rode a bike", "riding a bike"), ("swim", "swam", "swimming"), ("skate", "skated", "skating"),
          ("whistle", "whistled", "whistling"), ("do a cartwheel", "did a cartwheel", "doing cartwheels"),
          ("read", "read", "reading"), ("ride a scooter", "rode a scooter", "riding a scooter"),
          ("juggle", "juggled", "juggling"), ("tie a knot", "tied a knot", "tying knots"), ("dive", "dived", "diving"),
          ("hop on one foot", "hopped on one foot", "hopping on one foot"), ("catch a ball", "caught a ball", "catching a ball"),
          ("count to a hundred", "counted to a hundred", "counting to a hundred"), ("write letters", "wrote letters", "writing letters"),
          ("draw a horse", "drew a horse", "drawing horses"), ("skip", "skipped", "skipping"),
          ("climb the rope", "climbed the rope", "climbing the rope"), ("ski", "skied", "skiing")]
DESTS = [("the zoo", "at the zoo", "lions giraffes monkeys elephants zebras tigers penguins bears"),
         ("the farm", "on the farm", "cows pigs sheep chickens horses goats ducks"),
         ("the aquarium", "at the aquarium", "sharks turtles jellyfish seals octopuses starfish"),
         ("the mountains", "in the mountains", "eagles waterfalls goats rocks"),
         ("the museum", "at the museum", "dinosaurs paintings statues rockets crowns"),
         ("the city", "in the city", "buildings buses trains bridges fountains"),
         ("the fair", "at the fair", "rides balloons clowns ponies games"),
         ("the circus", "at the circus", "clowns acrobats jugglers horses seals"),
         ("the lake", "at the lake", "ducks swans boats frogs fish")]
DESTS = [(d, a, s.split()) for d, a, s in DESTS]
TRANSPORT = [("car", "in the car"), ("bus", "on the bus"), ("train", "on the train"), ("boat", "on the boat"),
             ("van", "in the van")]
INSTRUMENTS = "piano drum violin flute guitar trumpet harp xylophone".split()
DREAMS = [("a land made of candy", "chocolate rivers", "lollipop trees", "gummy bears", "cotton candy clouds"),
          ("a castle in the clouds", "flying horses", "rainbow bridges", "silver towers", "tiny dragons"),
          ("the bottom of the sea", "singing fish", "giant shells", "friendly whales", "dancing crabs"),
          ("a silver city on the moon", "silver rocks", "moon rabbits", "shiny craters", "floating stars"),
          ("a forest of giant flowers", "talking bees", "huge ladybugs", "tall daisies", "sleepy snails"),
          ("a land of toys", "dancing teddy bears", "toy soldiers", "jumping balls", "wooden trains"),
          ("a snowy land far in the north", "polar bears", "ice castles", "snow foxes", "sparkly snowflakes")]
MAGIC = "stone shell feather key coin ring acorn button pebble leaf".split()
MAGIC_ADJ = "shiny glowing sparkly golden silver tiny strange magic".split()
SEEDS = [("sunflower", "a tall yellow sunflower"), ("tomato", "a big plant full of red tomatoes"),
         ("pumpkin", "a huge orange pumpkin"), ("bean", "a tall bean plant that reached the window"),
         ("carrot", "a long orange carrot"), ("rose", "a beautiful red rose"),
         ("strawberry", "a little plant with sweet red strawberries"), ("apple", "a little apple tree"),
         ("daisy", "a pretty white daisy"), ("pea", "a green plant full of peas")]
CLOTHES = ["hat", "scarf", "cap", "bow tie"]
BREAKABLES = "vase cup plate lamp bowl mirror jar teapot clock".split()
BUILDS = [("a tall tower", "tower", "blocks"), ("a big castle", "castle", "sand"), ("a cozy fort", "fort", "pillows"),
          ("a little house", "house", "boxes"), ("a long bridge", "bridge", "sticks"), ("a rocket", "rocket", "boxes"),
          ("a tall tower", "tower", "cups"), ("a big castle", "castle", "blocks")]
ILLS = ["a cold", "a cough", "a fever", "a sore throat", "a runny nose", "a tummy ache"]
# (noise, what it really was): the same noise is heard three times, then explained.
NOISES = [("tap , tap , tap", "it was only a branch tapping on the window"),
          ("drip , drip , drip", "it was only the kitchen tap dripping into the sink"),
          ("creak , creak , creak", "it was only the old door moving in the wind"),
          ("bump , bump , bump", "it was only the cat next door jumping on the roof"),
          ("squeak , squeak , squeak", "it was only a little mouse looking for crumbs"),
          ("hoo , hoo , hoo", "it was only an owl sitting in the tree outside"),
          ("scratch , scratch , scratch", "it was only a little hedgehog under the window"),
          ("whoosh , whoosh , whoosh", "it was only the wind blowing through the trees"),
          ("rattle , rattle , rattle", "it was only the window shaking in the wind"),
          ("thump , thump , thump", "it was only a ball bouncing in the house next door")]
# (animal, hurt part, what it eats, how it moves)
WILD = [("bird", "wing", "seeds", "fly"), ("duckling", "leg", "bread crumbs", "swim"), ("squirrel", "paw", "nuts", "climb"),
        ("rabbit", "paw", "carrots", "hop"), ("hedgehog", "paw", "berries", "walk"), ("turtle", "leg", "lettuce", "walk"),
        ("frog", "leg", "bugs", "hop"), ("owl", "wing", "worms", "fly"), ("mouse", "paw", "cheese", "run"),
        ("pigeon", "wing", "seeds", "fly"), ("kitten", "paw", "milk", "run"), ("fawn", "leg", "grass", "run")]
WISE = "owl turtle tortoise elephant bear goat raven frog".split()
# (book topic, what the children pretend to be, what they build)
TOPICS = [("pirates", "pirates", "a pirate ship"), ("dinosaurs", "dinosaurs", "a dinosaur cave"),
          ("dragons", "dragons", "a dragon cave"), ("knights and castles", "knights", "a castle"),
          ("space", "astronauts", "a rocket"), ("fairies", "fairies", "a fairy house"),
          ("the jungle", "explorers", "a jungle camp"), ("the sea", "sailors", "a big boat"),
          ("trains", "train drivers", "a train"), ("the north pole", "polar bears", "an igloo")]

# Small daytime sights, drawn afresh each time they occur: the unpredictable content words of a story.
SCENERY = ["a little bird sang in a tree", "two butterflies flew by", "a squirrel ran up a tree", "the wind moved the leaves",
           "a bee buzzed around the flowers", "a ladybug landed on a leaf", "some ducks flew over", "a dog barked far away",
           "the clouds looked like sheep", "the sun came out from behind a cloud", "a snail moved slowly across the path",
           "a rabbit hopped into the bushes", "the grass was soft and green", "the flowers smelled sweet", "a soft wind blew",
           "the sky was bright and blue", "a cat sat on a wall and watched", "a <color> butterfly landed on a flower",
           "a little frog sat on a stone", "an airplane flew high in the sky", "a <color> bird sat on a branch",
           "bees were busy in the flowers", "a family of ducks walked by", "a little mouse ran under a rock",
           "far away , a train went choo , choo", "the sun was warm on {his} face", "a <color> balloon floated up into the sky",
           "an old dog was sleeping in the shade", "a crow called from the top of a tree", "the leaves were green and shiny"]

_COUNTS = {n: " , ".join(NUM[1:n + 1]) for n in range(5, 11)}
_SHEEP = {n: " , ".join(f"{w} sheep" for w in NUM[1:n + 1]) for n in range(4, 10)}


def _art(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# ----------------------------------------------------------------------------- templates
# A tiny format: "@name" starts a section ("@schema !friend" = the schema introduces the friend
# itself, so the intro must not); "/" starts a step ("/0.5" = optional, kept with p = 0.5); every
# other line is one alternative of the current step. "[a|b|]" is an inline choice made when the
# story is written (nested groups are expanded at import); "<name>" is a macro from MACROS.
# Placeholders {x} are the keys of `_slots`. Gendered words never appear literally: they all come
# from slots, which is what makes pronoun agreement checkable.
MACROS = {
    "said": "said|said|replied", "asked": "asked|asked|wondered", "shouted": "shouted|cried|yelled",
    "happy": "happy|glad|very happy|so happy|full of joy", "sad": "sad|very sad|so sad|unhappy|upset",
    "scared": "scared|afraid|frightened|very scared", "big": "big|huge|large|great big", "little": "little|small|tiny",
    "then": "then|after that|soon|next", "smiled": "smiled|grinned|beamed", "laughed": "laughed|giggled",
    "good": "good|great|wonderful|lovely", "yummy": "yummy|delicious|tasty", "hugged": "hugged|held|cuddled",
    "very": "very|really|so", "gently": "carefully|gently|slowly",
    "lovely": "sunny|warm|bright|lovely", "tired": "tired|sleepy|very tired", "looked": "looked|searched",
    "excited": "excited|so excited|very excited",
    "color": "|".join(COLORS), "scenery": "|".join(SCENERY),
    "oneday": "one day|one {day}|one morning|one afternoon|one sunny day|one {day} morning|one bright morning|on {day}",
}

TEMPLATES = r"""
@opening
/
once upon a time , there was a <little> {kid} named {N} .
once upon a time , there was a [kind|curious|cheerful|brave|shy|clever|gentle|funny] little {kid} called {N} .
there once was a [little|happy|curious|sleepy|busy|friendly] {kid} named {N} .
{N} was a [little|young|kind|happy|curious|gentle|playful] {kid} .
once there was a [little|sweet|funny|bright] {kid} . {his} name was {N} .
long ago , there lived a [little|young|cheerful] {kid} named {N} .
/0.6
{he} had {kid_feat} .
{N} had {kid_feat} and a [big|warm|happy] smile .

@fact_home
/
{N} lived in {home} {home_where} with {his} {P} .
{he} lived with {his} {P} in {home} {home_where} .
{N} and {his} {P} lived in {home} {home_where} .
home was {home} {home_where} , where {N} lived with {his} {P} .
/0.4
from {his} window , {N} could see {home_view} .

@fact_pet
/
{N} had a pet {pet} named {A} . {A} was [small and fluffy|very playful|a little lazy|always hungry|fast and funny|old and gentle|very clever|shy but sweet] .
{N} 's best [buddy|pal] was {his} {pet} , {A} . {a_he} followed {N} everywhere .
{he} had a [fluffy|little|funny|playful] {pet} called {A} , and {N} loved {a_him} very much .
{N} also had a {pet} . {a_his} name was {A} , and {a_he} was [always happy|never still|the best pet ever] .
/0.5
{A} {pet_habit} .
whenever {N} came home , {A} {a_sound} [happily|and ran to the door] .

@fact_obj
/
{N} had {a_color} {obj} . it was {his} [favorite thing in the whole world|very favorite thing] .
{N} 's favorite thing was {a_color} {obj} . {he} took it everywhere .
{his} {P} once gave {him} {a_color} {obj} , and {N} loved it more than anything .
{N} had a special toy . it was {a_color} {obj} , and {he} played with it every day .
/0.5
the {obj} {obj_desc} .
{N} 's {obj} {obj_desc} , and {he} [loved that|thought that was the best part] .

@fact_friend
/
{N} 's best friend was {a_f_kid} named {F} .
{N} had a best friend named {F} . {F} lived [next door|down the road|across the street|on the same street] .
{F} was {N} 's best friend . they [played together every day|did everything together] .
{N} 's best friend was {F} , a [funny|kind|clever|loud|quiet] {f_kid} who liked to {act2} .
{F} was {N} 's friend from [school|down the street|next door] . {f_he} was [funny|kind|clever|loud|quiet] and liked to {act2} .
/0.3
{N} and {F} [often|always] liked to {act2} together .

@fact_food
/
{N} loved to eat {fds} . {fds} were {his} favorite food .
more than anything , {N} loved {fds} .
{N} 's favorite snack was {fds} . {he} could eat them all day .
{N} liked many foods , but {fds} were the best .
/0.5
{N} liked them because they were {food_adj} .
" {fds} are so {food_adj} ! " {N} always said .

@ending
/
[that night|that evening|when the day was over] , {N} <hugged> {his} {color} {obj} and [smiled|fell asleep] .
that night , {A} [curled up|slept] at the foot of {N} 's bed , and {N} <smiled> .
{N} and {F} [stayed|were] best friends for a long , long time .
it was a day {N} would always remember .
{N} went to sleep [happy|with a smile] , and {A} went to sleep too .
and {N} lived happily with {his} {P} in {home} {home_where} .
{N} told {F} all about it the next day , and they both <laughed> .
after that , {N} [always|often] shared {his} {fds} with {his} friends .
{N} [smiled to {himself}|hummed a song to {himself}] , and {A} {a_sound} .
that night , {N} looked out of {his} window at {home_view} and <smiled> .
[it had been|what] a <good> day !
/0.3
the end .

@lost
/
<oneday> , {N} took {his} {color} {obj} to the {place} .
one <lovely> {day} , {N} and {his} {P} [went|walked] to the {place} . {N} brought {his} {color} {obj} [with {him}|along|too] .
on {day} , {N} carried {his} {color} {obj} all the way to the {place} .
<oneday> , {N} [asked|begged] {his} {P} , " can we go to the {place} ? i want to play with my {obj} there . " " [all right|yes , let us go|of course] , " said {his} {P} .
/0.4
{place_desc} .
/
{he} played with {his} {obj} {in_place} [all morning|for a long time|until lunch|for hours] .
{N} [laughed and |]played {in_place} with {his} {obj} until the sun was high .
{in_place} , {N} [threw|tossed|showed] {his} {obj} [up high|to the birds|to the sky] and <laughed> .
{N} and {his} {obj} had [so much fun|a wonderful time|the best time] {in_place} .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
<then> {his} {P} called , " [time to go home|it is time for lunch|come home now] , {N} ! " so {N} ran home .
when it was time to go home , {N} was <tired> , and {he} ran home [fast|quickly|without looking back] .
[soon|then] it began to rain , so {N} and {his} {P} hurried home .
/
[later|that evening|after dinner] , {N} wanted to play with {his} {obj} , but it was gone !
[later|that evening|after lunch] , {N} looked for {his} {color} {obj} . it was not there !
at bedtime , {N} [reached for|wanted] {his} {obj} . but the {obj} was [gone|not there|nowhere to be seen] !
/
" where is my {obj} ? " {N} [asked|cried] . {he} [felt|was] [very sad|so sad|worried] .
{N} [felt|was] <sad> . " i can not find my {obj} ! " {he} [cried|said] .
" oh no ! my {obj} ! " {N} cried . [tears filled {his} eyes|{his} lip began to shake|{he} felt like crying] .
/
{he} <looked> {s1} . it was not there . {he} <looked> {s2} . it was not there [either|too] .
{N} searched {s1} and {s2} , but the {obj} was not there .
{N} <looked> {s1} , {s2} and even {s3} . but there was no {obj} .
/0.5
{A} [tried to help|sniffed all around|looked too] , but {a_he} could not find it either .
/
{his} {P} [gave {him} a hug|hugged {him}] and said , " where did you play with it last ? "
" think , {N} , " said {his} {P} . " where did you have it last ? "
{his} {P} sat down next to {him} . " let us think [together|about it] . where were you [today|this morning] ? "
/
{N} thought [and thought|for a moment|very hard] . then {he} remembered ! " i played with it {in_place} ! "
{N} closed {his} eyes and thought . " the {place} ! " {he} [shouted|cried|said] . " i left it {in_place} ! "
/
so {N} and {his} {P} went back to the {place} . [there|and there] , right where {he} had left it , was the {color} {obj} !
{N} ran [all the way|back] to the {place} . [there it was|and there it was] , the {color} {obj} , [waiting for {him}|right where {he} had left it|in the grass] !
/
{N} [picked it up and |]<hugged> {his} {obj} . " i found you ! " {he} said [happily|with a big smile] .
" my {obj} ! " {N} [laughed|cried happily] , and {he} <hugged> it tight .
/
from then on , {N} always [took good care of|remembered where {he} put] {his} {color} {obj} .
{N} learned to [always |][look after|take care of] {his} things .
after that , {N} never left {his} {obj} behind [again|anywhere] .

@new_friend !friend
/
<oneday> , a new {f_kid} came to the {place} . {f_his} name was {F} .
one {day} , {N} saw {a_f_kid} sitting alone {in_place} . it was {F} , who had just moved [to town|next door|into the house across the street] .
<oneday> , {N} was playing {in_place} when {he} saw {a_f_kid} {N} had never seen before . the {f_kid} was called {F} .
/
{F} looked [shy|sad|lonely] . {f_he} did not know anyone [there|yet] .
{F} was sitting [all alone|by {f_himself}] . {f_he} looked [a little sad|lonely|shy] .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
{N} [walked over|went over to {f_him}] and said , " hello ! my name is {N} . do you want to play ? "
{N} wanted to help . {he} walked up to {F} and said , " hi , i am {N} . will you play with me ? "
{N} took a deep breath , walked over and said , " hi ! do you want to {act} with me ? "
/
{F} smiled [a little|a big smile] . " yes , please ! " {f_he} said .
" i would like that , " said {F} , and {f_he} <smiled> .
{F} looked up . " really ? " {f_he} asked . " yes ! " said {N} , and {F} <smiled> .
/
so they {act_ed} {in_place} . then they {act2_ed} .
first they {act_ed} , and then they {act2_ed} . {F} <laughed> a lot .
they {act_ed} [for a long time|all afternoon|until they were tired] . {F} was [very good at it|really fast|so funny] .
/0.5
{F} told {N} about {f_his} old home . {N} told {F} about {his} {P} [and {A}|] .
/0.6
{N} showed {F} {his} {color} {obj} . " you can play with it too , " {he} said .
/0.6
when the sun went down , {F} said , " thank you , {N} . today was the best day ! "
/
from that day on , {N} and {F} were best friends . they {act_ed} together every day .
{N} and {F} became [good|best] friends . every day after that , they met {in_place} .
/
{N} learned that a [kind word|little kindness|smile] can make a new friend .
{N} was glad {he} had said hello . [making a new friend|a new friend] was the best thing of all .

@storm
/
one [evening|night] , dark clouds [filled|covered] the sky . the wind began to [blow|howl] .
one [evening|night] , the sky turned dark and gray . the wind [blew|howled] [hard|loudly] [outside|through the trees] .
/
[soon|then] , rain [fell|poured down] , and there was a loud boom of thunder !
then came the storm . lightning flashed and the thunder went boom !
[all at once|suddenly] , there was a [big|bright] flash of lightning . then came a loud crash of thunder !
/
{N} [hid under {his} blanket|ran to {his} room|held {his} {color} {obj} tight] . {he} was [very |]<scared> .
{N} was <scared> . {he} pulled {his} blanket up to {his} nose [and held {his} {color} {obj}|and did not move] .
/
{A} was <scared> too . {a_he} [hid under the bed|ran to {N}|shook all over] .
{A} did not like the storm . {a_he} [crawled under the bed|jumped into {N} 's lap|hid behind the sofa] .
/
{his} {P} came in and sat on the bed . " do not be afraid , {N} , " {p_he} said . " the storm can not hurt us . we are safe [inside|in our house] . "
{his} {P} [came in|opened the door] with a [candle|flashlight] . " it is just a storm , " {p_he} said [softly|gently] . " we are safe and warm in here . "
/0.6
" the thunder is just a loud noise , " said {his} {P} . " the rain helps the flowers grow . "
{his} {P} told {him} a story about [a brave little boat|a sleepy bear|the sun and the rain] until the thunder [was far away|went quiet] .
/
{N} [hugged|held] {his} {P} . soon {he} was not scared anymore . {he} [counted the thunder booms|listened to the rain] and fell asleep .
{N} felt better . {he} listened to the [rain on the roof|wind outside] , and [soon|slowly] {his} eyes closed .
/
the next morning , the sun was shining . there was a big rainbow over the {place} !
in the morning , the storm was gone . the sky was blue , and a rainbow [shone|was] over the {place} .
/
{N} [ran|went] outside with {A} . they [jumped in the puddles|splashed in the puddles] .
{N} and {A} went out to [look at the rainbow|splash in the puddles|find the fallen leaves] .
/
{N} learned that storms [are not so scary|always pass] , and that the sun [always comes back|comes out again] .
" storms are loud , " said {N} . " but they always end . "

@baking
/
<oneday> , {N} 's {P} said , " let us bake {bake_a} today ! "
one rainy {day} , {N} asked {his} {P} , " can we bake {bake_a} ? " " what a good idea ! " said {his} {P} .
<oneday> , {N} 's {P} had a [surprise|plan] . " today we will bake {bake_a} for {F} , " {p_he} said .
/
{N} [jumped up and down|clapped {his} hands] . " can i help ? " {he} asked . " of course , " said {his} {P} .
" yay ! " said {N} . {he} loved [baking|to help in the kitchen] .
/
they [put on aprons|washed their hands] and got out the {i1} , the {i2} and the {i3} .
first they [got out|found] everything they needed : the {i1} , the {i2} and the {i3} .
/
{N} put the {i1} into a <big> bowl . then {he} added the {i2} and the {i3} . {his} {P} [stirred|mixed] it all together .
{his} {P} [put|poured] the {i1} in a bowl , and {N} added the {i2} and the {i3} . {N} [stirred and stirred|mixed it with a big spoon] .
/0.4
some {i1} spilled on the floor . {A} came to [lick|sniff] the floor ! {N} <laughed> .
/0.4
{N} got {i2} on {his} nose ! {his} {P} <laughed> .
/
then they put the {bake} in the oven . they waited and waited .
then the {bake} went into the [hot |]oven . {N} [watched through the glass|sat by the oven and waited|counted the minutes] .
/
soon the kitchen smelled [so good|sweet and warm|wonderful] . the {bake} {b_was} ready !
[at last|soon] , {his} {P} took the {bake} out of the oven . {b_them} [looked|smelled] [perfect|so good|wonderful] !
/
{N} took some to {F} . " did you make {b_them} ? " asked {F} . " yes , with my {P} ! " said {N} .
{N} [brought|took] some of the {bake} to {F} . " you made {b_them} ? " asked {F} . " my {P} helped , " said {N} [proudly|with a smile] .
/
the {bake} {b_was} [yummy|delicious|sweet and soft] . everyone had some , and {A} had a little bite too .
everyone said the {bake} {b_was} the best they had ever tasted . even {A} wanted some !
/
{N} learned that baking is fun , and sharing [is even better|makes it taste even better] .
cooking with {his} {P} was {N} 's new favorite thing .

@trip
/
<oneday> , {N} 's family went on a trip to {dest} .
{N} was <excited> . today {he} was going to {dest} with {his} {P} !
" wake up , {N} ! " said {his} {P} [one morning|one {day} morning] . " today we are going to {dest} ! "
/
they went by {tr} . {N} looked out of the window [the whole way|and counted the trees|and sang songs] .
the ride {in_tr} was long . {N} [sang songs|played games|counted cows] [with {his} {P}|to pass the time] .
/
{at_dest} , {N} saw {d1} . " look , {P} ! " {he} <shouted> . " {d1} ! "
the first thing {N} saw {at_dest} was {d1} . " wow ! " {he} said .
/
then they saw {d2} and {d3} . {N} [liked|loved] the {d2} [best|the most] .
they walked around and saw {d2} and {d3} too . {N} could not stop looking at the {d2} .
/0.5
they ate {fds} for lunch [under a tree|on a bench|by the water] .
/0.4
{N} took a picture of the {d2} for {F} .
/
at the end of the day , {N} was <tired> . {he} fell asleep {in_tr} on the way home .
by evening , {N} 's feet were tired , but {his} heart was happy . {he} [slept|fell asleep] {in_tr} [all the way home|on the way home] .
/
that night , {N} told {A} all about the {d2} . {A} just [yawned|listened] .
at home , {N} drew a picture of the {d2} and put it on the wall .
the next day , {N} told {F} all about {dest} and the {d2} .
/
" can we go to {dest} again ? " {N} asked . " yes , [we can|one day|next summer] , " said {his} {P} .
it was the best trip [ever|of the whole year] .

@quarrel
/
<oneday> , {N} and {F} were playing {in_place} .
<oneday> , {F} came over to play with {N} {in_place} .
/
they both wanted to play with the same {obj2} . " it is mine ! " said {N} . " no , i had it first ! " said {F} .
{N} and {F} both grabbed the {obj2} . " give it to me ! " [said|shouted] {N} . " no , it is my turn ! " [said|shouted] {F} .
/
they pulled and pulled . then the {obj2} fell [on the ground|on a rock] and broke .
they pulled [harder and harder|this way and that way] until , snap ! the {obj2} broke [in two|into pieces] .
/
{F} [went home|ran home] [crying|without a word] . {N} [sat alone|felt sad|was angry , then sad] .
" i do not want to play with you anymore ! " said {F} , and {f_he} went home . {N} was [angry|upset] , and then {he} was <sad> .
/
that night , {N} could not sleep . {he} missed {F} .
at dinner , {N} did not want to eat . {he} kept thinking about {F} .
/
{his} {P} said , " friends do not always agree . but you can say sorry , and you can fix it together . "
" what is wrong ? " asked {his} {P} . {N} told {p_him} everything . " maybe you can say sorry , " said {his} {P} .
/
the next day , {N} went to {F} 's house . " i am sorry , {F} , " {he} said . " i am sorry too , " said {F} .
the next morning , {N} knocked on {F} 's door . " i am sorry i pulled , " said {N} . " me too , " said {F} , and {f_he} <smiled> .
/
together they [fixed|mended] the {obj2} with [tape|glue] . then they took turns playing with it .
they [fixed|mended] the {obj2} [together|with some glue] . it was not perfect , but it worked . this time , they took turns .
/
{N} and {F} learned that taking turns is better than fighting .
{N} learned that a friend is more important than a toy .

@birthday !obj
/
it was {N} 's birthday ! today {he} was {age} years old .
{N} woke up [early|with a big smile] . it was {his} birthday ! {he} was {age} today .
/
{his} {P} [made|baked] a <big> [chocolate |strawberry |]cake with {age} candles on it .
there was a <big> cake with {age} candles , [and balloons everywhere|and a big sign that said " happy birthday , {N} ! "|and lots of presents] .
/
{F} came to the party , and so did all {his} friends .
all of {N} 's friends came to the party . {F} came first .
/
they played games and [sang songs|danced|had a lot of fun] . {A} wore a little party hat !
they [played games|danced|ran around] and <laughed> [a lot|all afternoon] . {A} ran after the balloons .
/
then everyone sang " happy birthday " . {N} made a wish and blew out all {age} candles .
everyone sang " happy birthday to you " . {N} took a big breath and blew out all {age} candles [at once|in one go] !
/
{F} gave {N} a present . inside was {a_color} {obj} ! " thank you , {F} ! " said {N} . " i love it ! "
{F} had a present for {N} . {N} opened it . it was {a_color} {obj} ! " it is just what i wanted ! " {he} said .
/0.5
the {obj} {obj_desc} . {N} played with it all afternoon .
/
" what did you wish for ? " asked {F} . " it is a secret ! " said {N} [with a smile|and laughed] .
/
that night , {N} went to bed with {his} new {color} {obj} . it was the best birthday ever .
that night , {N} <hugged> {his} new {color} {obj} . " being {age} is [great|the best] , " {he} said [sleepily|with a yawn] .

@learning
/
{N} wanted to learn to {sk} . {F} could {sk} , and {N} wanted to {sk} too .
all of {N} 's friends could {sk} . but {N} could not . [not yet|not one bit] .
/
" can you help me , {P} ? " {N} asked . " of course , " said {his} {P} .
{N} asked {his} {P} for help . " i will [teach|show] you , " said {his} {P} . " let us start today . "
/
the first time {N} tried , it was very hard . {he} [fell down|could not do it|wanted to give up] .
{N} tried , but it did not work . " it is too hard ! " {he} [said|cried|shouted] .
/
the second time , {N} tried again . it was still hard .
{N} tried again [and again|the next day] . it was still [very |]hard .
/
" do not give up , " said {his} {P} . " try again . every time you try , you get better . "
" everyone has to learn , " said {his} {P} . " even i could not {sk} at first . "
/
so {N} practiced every day . {he} practiced in the morning and {he} practiced after lunch .
so {N} kept trying . {he} practiced [every day|every morning|after school] , even when it was hard .
/0.4
{A} watched {N} practice . sometimes {a_he} {a_sound} , as if to say , " you can do it ! "
/
then one day , {N} could {sk} [all by {himself}|] ! " look at me ! i can {sk} ! " {he} <shouted> .
[after a week|after many days|one morning] , it happened . {N} could {sk} ! " i did it ! " {he} <shouted> .
/
{his} {P} clapped , and {F} cheered . {A} {a_sound} happily .
{his} {P} [gave {him} a big hug|clapped and clapped] . " i knew you could do it ! " {p_he} said .
/0.5
after that , {N} {sk_ed} every day , and {he} never stopped smiling .
/
{N} learned that practice [makes things easier|helps you learn anything] .
{N} learned that if you keep trying , you can do [hard things|almost anything] .

@help_animal
/
one day , {in_place} , {N} found a little {W} . it had a hurt {w_part} .
<oneday> , {N} was walking {in_place} when {he} heard a small sound . it was a little {W} with a hurt {w_part} .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
the {W} [looked|was] [scared|cold|tired] . " poor little {W} , " said {N} . " i will help you . "
the little {W} could not {w_move} . " do not be afraid , " {N} whispered . " i will take care of you . "
/
{N} <gently> picked up the {W} and took it home .
{N} <gently> put the {W} in {his} [hat|hands|basket] and carried it home .
/
{his} {P} helped {him} make a bed for the {W} in a [box|basket] with a soft cloth .
at home , {his} {P} looked at the {W} 's {w_part} . " we can help it , " {p_he} said . they made a [warm|soft] bed in a [box|basket] .
/
{N} gave the {W} some {w_food} and some water . the {W} ate it all up .
" what does a {W} eat ? " asked {N} . " {w_food} , " said {his} {P} . so {N} gave it some {w_food} .
/
every day , {N} took care of the {W} . {A} [watched|sniffed] the {W} , but {a_he} was [gentle|kind] .
every morning , {N} checked on the {W} and gave it fresh water . {A} sat next to the box and watched .
/
after a week , the {W} 's {w_part} was better . it could {w_move} again !
[one morning|after a few days] , the {W} [stood up|looked much better] . its {w_part} was better , and it could {w_move} again !
/
{N} took the {W} back to the {place} and let it go . " goodbye , little {W} ! " {he} said .
it was time to say goodbye . {N} carried the {W} back to the {place} . " be [safe|careful] , little {W} , " {he} said .
/
sometimes , {N} saw the {W} {in_place} , and {he} always <smiled> .
the {W} [looked back at {N}|stopped for a moment] , and then it was gone . {N} felt <happy> .
/
{N} learned that [being kind|kindness] to animals makes the world better .

@dream
/
one night , {N} had a [strange|wonderful|magical] dream .
that night , {N} fell asleep and had the [most wonderful|strangest|best] dream .
/
in the dream , {N} could fly ! {he} flew over the {place} and over {his} house .
in the dream , {N} [flew|floated] up into the sky , high over the {place} [and the trees|and the houses] .
/
then {he} landed in {dm} . there {he} saw {dm1} and {dm2} .
soon {he} came to {dm} . everywhere {he} looked , there were {dm1} and {dm2} .
/
{A} was there too , and {a_he} could talk ! " hello , {N} , " said {A} . " welcome to {dm} ! "
then {N} saw {A} ! " {N} ! " said {A} . {A} could talk ! " come and play , " {a_he} said .
/
they [played|ran|danced] all day . {N} ate {fds} as big as houses .
they played with the {dm1} and <laughed> [all day|for hours] . there were even {fds} as big as houses !
/
then {N} heard a voice . " {N} , wake up ! " it was {his} {P} .
then everything went [soft|fuzzy|quiet] . " {N} , time to get up ! " said a voice . it was {his} {P} .
/
{N} opened {his} eyes . {he} was in {his} own bed , and {A} was sleeping at the end of the bed .
/
" i had the best dream , " said {N} . " {A} could talk , and i could fly ! "
at breakfast , {N} told {his} {P} all about {dm} . " it sounds [wonderful|amazing] , " said {his} {P} .
/
{A} just [yawned|looked at {him}] . {N} <laughed> , and {he} hoped to dream of {dm} again .

@race
/
<oneday> , there was a big race {in_place} .
everyone was {in_place} for the big race . {N} and {F} were [ready|excited|a little nervous] .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
{N} and {F} both wanted to win . " i am the fastest ! " said {F} .
" i will win for sure ! " said {F} . " we will see , " said {N} [with a smile|quietly] .
/
" ready , set , go ! " shouted {X} . and they ran !
{X} [blew a whistle|waved a flag|shouted go] , and everyone started to run !
/
{F} ran very fast at the start . but then {f_he} stopped to [rest|look at a butterfly|tie {f_his} shoe] .
{F} was [far|way] ahead . " this is easy , " {f_he} said , and {f_he} sat down to [rest|eat a snack|look at the birds] .
/
{N} did not stop . {he} ran and ran , [slow but steady|step by step] .
{N} was not fast , but {he} did not stop . {he} kept going , [step by step|one foot after the other] .
/
in the end , {N} [crossed the line first|won the race] ! everyone cheered .
{N} passed {F} and [crossed the line|reached the end] first ! everyone [cheered|clapped] .
/
{F} was [a little sad|sad at first] . {N} said , " you ran very fast , {F} . next time you will win ! "
{F} came [running up|in second] . " good race , " {f_he} said . " you too , " said {N} .
/
{F} <smiled> , and they [shared a cold drink|ate {fds} together] .
/
{N} learned that slow and steady can win the race , and that a good friend is kind even when {he} wins .
{N} and {F} learned that it is not about being fast . it is about not giving up .

@noise
/
one night , {N} was in bed . suddenly , {he} heard a noise . {noise} .
one night , when the house was quiet , {N} heard something . {noise} .
/
{N} pulled the blanket over {his} head . " what is that ? " {he} whispered .
{N} sat up in bed . {his} heart went [fast|thump , thump] . " who is there ? " {he} whispered .
/
the noise came again . {noise} . {N} [was very scared|held {his} {color} {obj} tight] .
{noise} . there it was again ! {N} [was very scared|held {his} {color} {obj} tight|did not move] .
/
{he} [got out of bed|tiptoed] to {his} {P} 's room . " {P} , there is a monster ! " {he} said .
{N} ran to {his} {P} . " {P} , wake up ! i heard a [monster|strange noise] ! "
/
" let us go and see , " said {his} {P} . {p_he} took a flashlight , and they [looked around|walked to the window] together .
{his} {P} got up and took {his} hand . " let us find out together , " {p_he} said .
/
{noise} . {cause} !
they listened . {noise} . they looked , and they saw it . {cause} !
/
{N} <laughed> . " it is not a monster at all ! " {he} said .
{N} began to laugh . " silly me ! " {he} said .
/
{his} {P} tucked {him} back into bed . " things are not so scary when you look at them in the light , " {p_he} said .
{his} {P} kissed {him} good night . " next time , remember this night , " {p_he} said [softly|with a smile] .
/
{N} [closed {his} eyes|smiled] and fell asleep .
{noise} . this time , {N} just <smiled> and fell asleep .

@sharing
/
<oneday> , {N} 's {P} gave {him} {n_fds} .
<oneday> , {N} picked {n_fds} [from the tree|at the market|in the garden] .
/
{N} took {his} {fds} to the {place} . there {he} saw {F} . {F} looked <sad> .
{N} went to the {place} with {his} {fds} in a [bag|basket] . {F} was there , sitting [all alone|on a bench] .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
" what is wrong ? " asked {N} . " i forgot my lunch , and i am so hungry , " said {F} .
" are you [okay|all right] ? " asked {N} . " i am hungry , " said {F} . " i did not have [breakfast|lunch] . "
/
{N} looked at {his} {n_fds} . {he} wanted to eat them all . but {F} was hungry .
{N} had {n_fds} . {he} [loved|really liked] {fds} and wanted to keep them all . but then {he} looked at {F} .
/
so {N} gave {k_fds} to {F} . now {N} had {rest_fds} , and {F} had {k_fds} .
" here , " said {N} , and {he} gave {F} {k_fds} . that left {N} with {rest_fds} .
/
" thank you , {N} ! " said {F} . they sat on a bench and ate together .
{F} <smiled> [a big smile|from ear to ear] . " you are a good friend , " {f_he} said .
/
the {fds} tasted even better when they shared them . they were so {food_adj} !
/
{N} learned that sharing makes everyone happy .
{N} had fewer {fds} , but {he} felt [happier|richer|warm inside] than before .

@garden
/
one spring day , {N} 's {P} gave {him} a little {seed} seed .
one spring morning , {N} found a packet of {seed} seeds . " can we plant them ? " {he} asked {his} {P} .
/
{N} dug a hole in the garden and planted the seed . then {he} gave it some water .
{N} and {his} {P} dug a little hole . {N} put the seed in and covered it with soil . then {he} watered it .
/
every morning , {N} watered the seed . but nothing happened .
{N} watered the seed every day . [one day , two days , three days|days went by] . but nothing came up .
/
" when will it grow ? " {N} <asked> . " be patient , " said {his} {P} . " good things take time . "
" maybe it is broken , " {N} said [sadly|with a sigh] . " no , " said {his} {P} . " it just needs time and sun . "
/
after {n} days , a tiny green [sprout|leaf] came up !
/
{N} kept watering it . the sprout grew and grew .
{N} gave it water and [sang to it|talked to it|pulled the weeds] . [every day|each week] it got [bigger|taller] .
/0.5
one day , {A} tried to dig in the garden . " no , {A} ! " said {N} . " that is my {seed} ! "
/
by summer , it was {seed_grown} !
[by summer|after many weeks] , the little seed had become {seed_grown} !
/
{N} [showed it to {F}|was very proud] . " i grew it myself ! " {he} said .
{N} called {F} to come and see . " wow ! " said {F} . " you grew that from a tiny seed ? "
/
{N} learned that [with patience|if you wait and work hard] , little things can grow big .

@snow_day
/
one winter morning , {N} looked out of the window . everything was white ! it had snowed all night .
one winter morning , {N} woke up and looked outside . snow ! [lots of snow|white snow everywhere|the whole world was white] !
/
{N} put on {his} coat , {his} boots and {his} {c2} {cloth} .
{N} [quickly |]put on {his} warm coat , {his} boots and {his} {c2} {cloth} .
/
{N} and {F} ran outside . they made a <big> snowman in the yard .
{F} came over , and they made a snowman [in the yard|by the gate] . it was [bigger than {N}|very big|a little crooked] !
/
they used two stones for the eyes and a carrot for the nose .
the snowman got stones for eyes , a carrot for a nose and [sticks for arms|a big smile of little stones] .
/
" our snowman needs a {cloth} , " said {F} . so {N} gave the snowman {his} {c2} {cloth} .
" the snowman looks cold , " said {F} . so {N} put {his} {c2} {cloth} on the snowman .
/
then they had a snowball fight . {A} ran in the snow and {a_sound} .
then they [made snow angels|had a snowball fight|slid down the hill] . {A} jumped in the snow and {a_sound} .
/
when they were cold , they went inside . {N} 's {P} made hot chocolate .
when their noses were red , they went inside for hot chocolate [and cookies|by the fire] .
/
the next day , the sun came out , and the snowman began to melt . only the {c2} {cloth} and the carrot were left .
/
{N} was sad , but {his} {P} said , " the snow will come again next winter . "
/
{N} put the {c2} {cloth} away until next winter .

@school !friend
/
it was {N} 's first day at a new school . {he} felt [nervous|scared|shy] .
today was {N} 's first day at school . {his} tummy felt [funny|full of butterflies] .
/
" what if no one likes me ? " {N} asked {his} {P} . " just be yourself , " said {his} {P} .
" i do not want to go , " said {N} . " you will be fine , " said {his} {P} , and {p_he} gave {him} a hug .
/
{N} 's teacher was {X} . {x_he} had a kind smile . " welcome , {N} , " {x_he} said .
the teacher , {X} , [smiled at {N}|showed {N} where to sit] . " we are glad you are here , " {x_he} said .
/
in class , they drew pictures and sang songs . {N} drew {his} house .
in class , they [read a story|counted to twenty|learned about [animals|the moon|colors|the sea]] and drew pictures . {N} drew {A} .
/
at lunch , {N} sat alone . then {a_f_kid} named {F} sat next to {him} . " hello ! do you like {fds} ? " asked {F} .
at lunch , {a_f_kid} [sat down next to|came over to] {N} . " hi ! i am {F} . can i sit here ? " " yes ! " said {N} .
/
" yes ! i love {fds} ! " said {N} . they shared their lunch and talked and <laughed> .
they [shared their lunch|talked about their pets|played at break] and <laughed> a lot .
/
after school , {N} ran to {his} {P} . " how was your day ? " asked {his} {P} .
/
" it was great ! i have a new friend ! {f_his} name is {F} ! " said {N} .
/
{N} could not wait to go back to school the next day .

@picnic
/
one sunny {day} , {N} and {his} {P} went on a picnic {in_place} .
<oneday> , {N} 's {P} said , " it is a lovely day for a picnic ! " so they went to the {place} .
/0.4
{place_desc} .
/
they packed a basket with {m1} , {m2} and {m3} .
{N} helped pack the basket . in went the {m1} , the {m2} and the {m3} .
/
they found a nice spot and put down a <big> blanket .
they found a [shady|sunny|quiet] spot [under a tree|near the water|on the grass] and spread out the blanket .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
{A} came too . {a_he} ran [around the blanket|after a butterfly] .
/
just as they started to eat , {N} saw a line of ants . the ants wanted some of the {m1} !
[but then|suddenly] , {N} saw ants ! a long line of ants was marching [to|toward] the {m1} .
/
" hey , those ants want our {m1} ! " {N} said . but then {he} <laughed> . " the ants are hungry too . "
/
{N} gave the ants some {m1} . then they ate the {m2} and the {m3} . it was all <yummy> .
/
when the picnic was over , they [packed up|folded the blanket] and walked home .
/
it was a [happy|perfect] day , and the ants had a picnic too .

@sick_day
/
one morning , {N} woke up with {ill} . {he} felt [tired|sick|awful] .
one morning , {N} did not feel well . {he} had {ill} , and {he} felt [hot|tired|sleepy] .
/
" you must stay in bed today , " said {his} {P} .
{his} {P} felt {his} head . " no playing today , " {p_he} said . " you need to rest . "
/
{N} was sad . {he} wanted to {act} with {F} {in_place} .
{N} was sad . {he} wanted to be out {act_ing} with {F} {in_place} .
/
{his} {P} made {him} warm soup and [a cup of tea|hot milk with honey] .
{his} {P} [brought|made] {him} [soup|toast and tea|warm milk] and read {him} a story .
/
{A} stayed on the bed with {N} all day . {a_he} did not leave {N} 's side .
{A} curled up next to {N} and kept {him} company all day .
/
in the afternoon , {F} came to the window and waved . {f_he} had made {N} a card . it said , " get well soon ! "
in the afternoon , there was a knock at the door . it was {F} with a card . the card said , " get well soon , {N} ! "
/
{N} rested and slept . the next day , {he} felt much better .
{N} slept [a lot|all night] . by the next morning , {ill} was gone !
/
{N} ran to the {place} . {he} and {F} {act_ed} all afternoon .
/
{N} learned that rest helps you get better , and that good friends care about you .

@lost_pet
/
<oneday> , {N} opened the door , and {A} ran out !
<oneday> , {N} left the gate open . when {he} came back , {A} was gone !
/
{N} looked everywhere , but {A} was gone . " {A} ! {A} ! " {he} called .
" {A} ! where are you ? " {N} called . but {A} did not come .
/
{N} and {his} {P} looked {o1} and {o2} . but they could not find {a_him} .
they looked {o1} . they looked {o2} . there was no {pet} anywhere .
/
{N} made signs that said " lost {pet} " and put them up on the street .
{N} drew a picture of {A} . under it , {he} wrote , " have you seen my {pet} ? "
/
that night , {N} was so sad that {he} could not sleep .
that night , {N} looked at {A} 's empty bed and cried .
/
the next morning , there was a knock at the door . it was {X} , [their neighbor|who lived down the street] .
/
" is this your {pet} ? " asked {X} . {A} was in {x_his} arms !
{X} was holding a {pet} . " i found this {pet} {o1} , " {x_he} said . it was {A} !
/
" {A} ! " <shouted> {N} . {A} jumped into {N} 's arms and licked {his} face .
{A} {a_sound} and jumped into {N} 's arms . {N} <hugged> {a_him} [tight|and did not let go] .
/
" thank you , {X} ! " said {N} . {his} {P} thanked {x_him} too .
/
from then on , {N} always [closed the door|made sure the door was shut] .

@treasure
/
<oneday> , {N} found an old map in [the attic|a box|a book] .
<oneday> , {N} was [cleaning|playing] in the attic when {he} found an old [map|piece of paper] . it was a map !
/
the map showed a big x next to the old tree {in_place} . " it is a treasure map ! " said {N} . {he} ran to get {F} .
/
{N} and {F} took a shovel and walked to the {place} . {A} came too .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
they found the old tree . they dug and dug . {A} helped dig too .
/
then the shovel hit something hard . it was a little wooden box !
/
{N} opened the box . inside were {n_coins} , an old key and a note .
/
the note said , " the real treasure is a good friend . "
/
{N} and {F} [laughed|smiled] . they shared the coins , and they kept the map [forever|in a safe place] .
/
it was the best adventure , and the best part was finding the treasure together .

@painting
/
one rainy {day} , {N} could not play outside . " what can i do ? " {he} asked .
it was raining [again|all day|hard] , and {N} was bored . " there is nothing to do , " {he} said [with a sigh|sadly] .
/
" why not paint a picture ? " said {his} {P} . {p_he} gave {him} paper and paints .
{his} {P} had an idea . {p_he} put paper , brushes and paints on the table . " let us paint ! " {p_he} said .
/
{N} decided to paint {A} . {he} painted {A} with {c2} paint .
first , {N} painted {A} . {A} was not really {c2} , but {N} painted {a_him} {c2} anyway .
/
then {he} painted the {place} , with a big yellow sun and a blue sky .
next , {he} painted the {place} and [a big yellow sun|some white clouds|a tall green tree] .
/
oops ! {N} knocked over the cup of water . the paint ran all over the paper .
[oh no|oops] ! {A} jumped on the table and knocked over the water . the colors ran everywhere .
/
{N} wanted to cry . but then {he} looked again . the colors had mixed into a [pretty|beautiful] rainbow !
{N} was [upset|sad] . but when {he} looked closer , the colors looked like a [rainbow|sunset|garden of flowers] !
/
" it is even better now ! " said {his} {P} .
" i love it , " said {his} {P} . " it is the best picture yet ! "
/
they put the picture on the wall . {A} sat under it and looked up at it .
/
{N} learned that [mistakes can turn into something beautiful|a mistake is not always bad] .

@tidy_up
/
" {N} , your room is a mess ! " said {his} {P} . " please clean it up before you play . "
{N} 's room was a big mess . there were toys everywhere . " time to tidy up , " said {his} {P} .
/
{N} did not want to clean . {he} wanted to {act} with {F} .
{N} did not want to clean . {he} would rather be {act_ing} with {F} .
/
but {he} started [anyway|slowly] . {he} put the books on the shelf and the clothes in the basket .
so {N} began . first the books , then the clothes , then the [blocks|crayons|cars] .
/
then {N} looked {s1} . there was {his} {color} {obj} ! {he} had lost it a long time ago !
when {he} looked {s1} , {N} found something . it was {his} {color} {obj} ! it had been lost for [weeks|a long time|days and days] !
/
" my {obj} ! " said {N} . " i looked everywhere for it ! "
" so that is where you were ! " {N} said to the {obj} , and {he} <laughed> .
/
after that , cleaning was not so bad . soon the room was clean and [tidy|shiny] .
/
" good job , {N} ! " said {his} {P} . " now you can go and play . "
/
{N} ran to {F} 's house with {his} {color} {obj} , and they {act_ed} all afternoon .
/
{N} learned that [cleaning up can be fun|a tidy room is a happy room] .

@kitten_tree
/
<oneday> , {N} heard a small cry {in_place} . " mew ! mew ! "
<oneday> , {N} was walking {in_place} when {he} heard a tiny sound . " mew ! "
/
{he} looked up . a little kitten was stuck high up in a tall tree .
{N} looked all around . then {he} looked up . there was a kitten high up in a tree !
/
" do not worry , little kitten ! " said {N} . but the tree was too tall to climb .
the kitten was too <scared> to come down , and the tree was too tall for {N} .
/
{N} ran to get {his} {P} , who had a long ladder .
/
{his} {P} climbed up the ladder slowly . {p_he} picked up the kitten and carried it down .
/
the kitten was [shaking|scared] . {N} held it <gently> and stroked its soft fur .
/
just then , {X} came running . " my kitten ! " {x_he} cried . " thank you for saving my little kitten ! "
/
{X} gave {N} a big hug and {n_fds} .
/0.5
the kitten [purred|licked {N} 's hand] , as if to say thank you .
/
{N} felt [proud|warm inside] . helping others made {him} happy .

@moving !obj
/
one day , {N} 's {P} said , " we are moving to a new house [in the city|far away|by the sea] . "
/
{N} was sad . " but i will miss {F} ! " {he} cried . {F} was {his} best friend .
/
on the last day , {F} gave {N} {a_color} {obj} . " so you do not forget me , " {f_he} said .
/
the new house was big and [empty|quiet] . {N} did not know anyone .
the new house had [big windows|a red door|a long hall] , but it felt [empty|strange|too quiet] .
/
{N} sat on the steps with {his} {color} {obj} and thought about {F} .
/
then {he} wrote a letter . " dear {F} , i miss you . the new house is big . i hope you come to visit . love , {N} . "
/
a week later , a letter came back . " dear {N} , i miss you too ! i will come in the summer . "
/0.5
{N} put the letter next to {his} {color} {obj} and read it [every night|again and again] .
/
in the summer , {F} came to visit . they {act_ed} and <laughed> all day , just like before .
/
{N} learned that real friends stay friends , even when they are far away .

@magic
/
<oneday> , {in_place} , {N} found a {mg_adj} {mg} .
<oneday> , {N} saw something [shine|sparkle] {in_place} . it was a {mg_adj} {mg} !
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
when {he} picked it up , it began to glow ! a tiny voice said , " you may have one wish . "
the {mg} felt warm in {his} hand . then it began to glow , and a [tiny|soft] voice said , " make a wish . "
/
{N} thought and thought . {he} could wish for a mountain of {fds} , or a castle , or a pony .
{N} [thought very hard|did not know what to wish for] . a big cake ? a pony ? a room full of {fds} ?
/
but then {he} thought of {F} . {F} was sad because {f_his} {obj2} was broken .
/
" i wish that {F} 's {obj2} was new again , " said {N} .
/
the {mg} glowed very bright , and then it was just a [plain|normal] {mg} again .
/
the next day , {F} ran up to {N} . " look ! my {obj2} is like new ! " {f_he} said .
the next morning , {F} came running . " {N} ! you will not believe it ! my {obj2} is fixed ! "
/
{N} <smiled> . {he} never told anyone about the {mg_adj} {mg} .
{N} just <smiled> and kept the {mg_adj} {mg} [in {his} pocket|in a little box|under {his} pillow] .
/
{N} learned that the best wishes are the ones we make for others .

@fishing
/
one early morning , {N} went fishing with {his} {P} at the lake .
<oneday> , {N} 's {P} said , " let us go fishing ! " they took two rods and went to the lake .
/
they sat in a little boat . {N} held {his} fishing rod very still .
they sat on the [dock|shore|old wooden boat] and put their lines in the water .
/
they waited and waited . nothing happened . " when will i catch a fish ? " {N} <asked> .
/
" be patient , " said {his} {P} . " fish come to those who wait . "
" fishing is about waiting , " said {his} {P} . " [listen to the birds|look at the water|enjoy the quiet] while you wait . "
/
then , tug ! tug ! something pulled on the line ! {N} pulled and pulled .
[all at once|suddenly] , the rod [bent|shook] . " i have one ! " <shouted> {N} . {he} pulled with all {his} might .
/
out came a big , shiny fish with {c2} spots !
out of the water came a fish ! it was [big and shiny|silver and shiny|long and shiny] , with {c2} spots .
/
the fish looked at {N} . " it looks sad , " {N} said . " can we let it go ? "
/
" yes , " said {his} {P} . " that is very kind . " {N} put the fish back in the water , and it swam away .
/
they did not catch any more fish that day , but {N} was happy . it was a good day with {his} {P} .
on the way home , {N} [smiled|hummed a song] . {he} had caught a fish , and {he} had let it go . it was a <good> day .

@camping
/
one summer , {N} went camping in the woods with {his} {P} and {F} .
<oneday> , {N} , {F} and {N} 's {P} packed a tent and went camping [in the woods|by a lake|in the hills] .
/
they put up a tent . it was hard , but they did it together .
putting up the tent was hard . the poles [fell down|would not stand up] [twice|again and again] , but at last it stood .
/
at night , they made a campfire and [roasted marshmallows|told stories] .
when it got dark , they sat by the fire . they [roasted marshmallows|sang songs|told funny stories] .
/
{N} looked up . the sky was full of stars ! " look , there is the moon ! " said {F} .
/
then they heard a sound . " hoo , hoo ! " {N} held {F} 's hand . " what is that ? "
/
" it is just an owl , " said {his} {P} . " owls stay awake at night . "
/
{N} and {F} <laughed> . they crawled into the tent and into their sleeping bags .
/
{N} fell asleep listening to the owl . " hoo , hoo , " it said . " good night , owl , " whispered {N} .

@library
/
<oneday> , {N} went to the library with {his} {P} .
<oneday> , {N} 's {P} took {him} to the library . there were [so many|hundreds of|shelves and shelves of] books !
/
{N} found a big book about {topic} . it was full of pictures .
on a [low|high|big] shelf , {N} found a book about {topic} . it had [bright|big|lots of] pictures .
/
{he} sat in a [soft|big] chair and read it all . {he} loved every page .
/
" can i take it home ? " {N} asked . " yes , you can , " said {his} {P} .
/
the next day , {N} told {F} all about {topic} .
/
" let us play {role} ! " said {F} . they made {made} out of boxes and blankets .
/
all afternoon , they were {role} . {A} wanted to play too .
/
when it was time to give the book back , {N} asked for another book about {topic} .
/
{N} learned that books can take you anywhere .

@kite
/
one windy {day} , {N} got a new {c2} kite .
{N} 's {P} [gave|made] {him} a {c2} kite . " it is a windy day , " {p_he} said . " let us fly it ! "
/
{N} and {F} ran to the top of the hill .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
{N} ran fast , and the kite went up , up , up into the sky !
/
" look how high it is ! " shouted {F} . the {c2} kite danced in the wind .
/
then a strong wind came , and the kite got stuck in a tall tree .
/
{N} was sad . " my kite ! " {he} cried .
/
{F} had an idea . " let us use a long stick ! " {f_he} said . they pulled <gently> , and the kite came down .
/
the kite had a small hole , but {N} 's {P} fixed it with tape .
/
the next windy day , {N} and {F} flew the {c2} kite again . this time , they stayed far away from the trees .

@music_show
/
there was going to be a show at {N} 's school . {N} wanted to play the {inst} .
/
{N} practiced the {inst} every day . {A} sat and listened . sometimes {a_he} {a_sound} along !
{N} practiced the {inst} [every day|after school|every evening] . at first it sounded [funny|terrible|squeaky] , but it got better .
/
on the day of the show , {N} 's tummy felt funny . " i am scared , " {he} told {his} {P} .
/
" take a big breath , " said {his} {P} . " just play like you play for {A} . "
/
{N} walked onto the stage . there were so many people ! {he} saw {his} {P} and {F} in the front row .
/
{N} took a big breath and began to play . {he} played the {inst} slowly and well .
/
when the song ended , everyone clapped and cheered ! {F} clapped the loudest .
/
{N} felt [proud|so happy] . {he} was not scared anymore .
/
{N} learned that being brave means doing something even when you are scared .

@counting_sheep
/
one night , {N} could not sleep . {he} turned this way and that way .
it was late , but {N} was still awake . {he} [rolled over|fluffed {his} pillow|looked at the ceiling] again and again .
/
{he} went to {his} {P} . " i can not sleep , " {he} said .
/
" try counting sheep , " said {his} {P} . " close your eyes and count them as they jump over a fence . "
/
so {N} closed {his} eyes and counted . " {sheep} . "
/
but {he} was still awake . then {A} jumped on the bed and [curled up|lay down] next to {him} .
/
{A} was warm and soft . {N} <hugged> {a_him} and listened to {a_him} breathe .
/
soon {N} 's eyes felt heavy . before {he} knew it , {he} was fast asleep .
/
in the morning , {N} said , " {P} , counting sheep did not work . but {A} did ! "

@market
/
<oneday> , {N} went to the market with {his} {P} . {he} had {n_coins} in {his} pocket .
/
{N} saw a little {obj2} in a shop window . {he} wanted it very much .
/
" how much is the {obj2} ? " {N} asked . " it costs {k_coins} , " said {X} , the shopkeeper .
/
{N} counted {his} coins . {he} had {n_coins} . that was enough !
/
{N} bought the {obj2} . now {he} had {rest_coins} left .
{N} gave {X} {k_coins} , and {X} gave {him} the {obj2} . {N} had {rest_coins} left .
/
then {N} saw {F} . {F} wanted some {fds} , but {f_he} had no money .
/
{N} used {his} last coins to buy {fds} for {F} . " thank you , {N} ! " said {F} .
/
on the way home , {N} [played with|carried] {his} new {obj2} and [sang a little song|skipped along] .

@lost_in_crowd
/
<oneday> , {N} and {his} {P} went to {dest} . there were so many people !
/
{N} stopped to look at the {d1} . when {he} turned around , {his} {P} was gone !
/
{N} was <scared> . " {P} ! where are you ? " {he} called .
/
then {N} remembered what {his} {P} always said : " if you get lost , stay where you are and ask a helper . "
/
so {N} stayed by the {d1} . {he} saw {X} , who worked there . " i am lost , " said {N} . " can you help me ? "
/
" of course , " said {X} . " what is your name ? " " my name is {N} , " {he} said .
/
{X} called out , " {N} is here , by the {d1} ! " and soon , {N} 's {P} came running .
/
{N} 's {P} <hugged> {him} tight . " you did the right thing , " {p_he} said .
/
{N} learned to always stay close , and what to do if {he} ever got lost .

@building
/
<oneday> , {N} wanted to build {bld} out of {bld_mat} .
/
{he} worked all morning . {he} [took {his} time|worked carefully] and built it [bit by bit|step by step] .
/
{he} built it higher and higher . soon the {bld_n} was [ready|done] . it was [great|wonderful] !
/
then {A} ran in and bumped into it . crash ! the {bld_n} fell down .
/
{N} was [angry|sad] . " {A} ! look what you did ! " {he} shouted . {A} looked sorry .
/
{F} came over . " do not be sad , " said {F} . " let us build it again , together . this time we can make it stronger . "
/
so they built it again . they made the bottom wide and strong . this {bld_n} was even better than the first one .
/
{A} ran by again , but this time the {bld_n} did not fall .
/
{N} learned that when things fall down , you can build them again , even better .

@honesty
/
<oneday> , {N} was playing with {his} {color} {obj} in the house .
/
{he} threw it too high , and it hit {his} {P} 's {brk} . crash ! the {brk} broke into pieces .
/
{N} was <scared> . {he} hid the pieces {s1} .
/
that evening , {his} {P} looked for the {brk} . " has anyone seen my {brk} ? " {p_he} asked .
/
{N} did not say anything . {his} tummy felt funny . {he} did not like keeping a secret .
/
at last , {N} said , " {P} , i broke your {brk} . i am sorry . i hid it {s1} . "
/
{his} {P} gave {him} a hug . " thank you for telling me the truth , " {p_he} said . " i am not angry . "
/
together they glued the {brk} back together . it was not perfect , but it was good enough .
/
{N} learned that telling the truth is always the best thing to do .

@new_baby
/
one day , {N} 's parents came home with a new baby . " this is your little {s_kid} , {S} , " they said .
/
everyone looked at baby {S} . {N} felt a little jealous .
/
baby {S} cried a lot . {N} 's {P} was always busy with {s_him} .
/
" nobody plays with me anymore , " {N} said sadly to {A} .
/
one day , baby {S} was crying and crying . {N} showed {s_him} {his} {color} {obj} .
/
baby {S} stopped crying and smiled ! then {s_he} <laughed> .
/
" you made {s_him} happy ! " said {his} {P} . " you are a great big {sib} . "
/
from then on , {N} loved being a big {sib} . {he} played with {S} every day .
/
{N} learned that there is enough love for everyone in a family .

@puddles
/
it rained all night . in the morning , there were big puddles {in_place} .
/
{N} put on {his} <color> boots and ran outside with {A} .
/
{N} jumped in the biggest puddle . splash ! {A} jumped in too .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
they splashed and played until they were covered in mud .
/
when they came home , {N} 's {P} looked at them and <laughed> . " you look like two little mud monsters ! "
/
{N} had a warm bath with lots of bubbles . then it was {A} 's turn .
/
{A} did not like the bath . {a_he} shook water all over the floor .
/
" i love puddles ! " said {N} . " can we play in the mud again tomorrow ? "

@gift
/
{N} 's {P} had a birthday soon . {N} wanted to give {p_him} a present .
/
but {N} had no money . " what can i give ? " {he} asked {F} .
/
" make something ! " said {F} . " presents from the heart are the best . "
/
so {N} picked some flowers {in_place} and made a card . {he} drew a big heart on it .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
{he} hid the card and the flowers {s1} so it would be a surprise .
/
on the birthday morning , {N} got the card and the flowers from {s1} .
/
" happy birthday , {P} ! " said {N} .
/
{his} {P} read the card . {p_he} had tears in {p_his} eyes . " this is the best present ever , " {p_he} said .
/
{N} learned that the best gifts come from the heart .

@wise_friend
/
{N} was sad . {he} was not good at {sk_ing} , and the other kids laughed .
/
{he} walked to the {place} and sat under a big tree .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
" why are you sad ? " asked a voice . it was a wise old {wise} .
/
{N} told the {wise} about {sk_ing} . the {wise} listened .
/
" i was not good at everything either , " said the {wise} . " but i kept trying . every day , a little better . "
/
so {N} tried a little every day . and every day , {he} came to the {place} to tell the {wise} .
/
after a month , {N} was good at {sk_ing} !
/
{he} ran to the tree to tell the {wise} . the {wise} just <smiled> .
/
{N} learned that [everyone has to start somewhere|practice and patience help] .

@hide_and_seek
/
one rainy afternoon , {N} and {F} played hide and seek in the house .
/
{F} closed {f_his} eyes and counted . " {cnt} ! ready or not , here i come ! "
/
{N} hid {s1} . {he} was very quiet .
/
{F} looked {s2} . " not here ! " then {f_he} looked {s3} . " not here either ! "
/
then {A} came and sat right next to {N} 's hiding place . {a_he} {a_sound} .
/
" {A} , shh ! " whispered {N} . but it was too late .
/
" i found you ! " shouted {F} . " you were {s1} ! "
/
{N} <laughed> . " {A} is a good helper , " {he} said .
/
then it was {N} 's turn to count .

@seashells
/
one hot summer day , {N} went to the beach with {his} {P} and {F} .
/
they built a sand castle and [splashed in the waves|swam in the sea] .
/0.5
<scenery> .
[just then|all around|above them] , <scenery> .
/
then they looked for shells . {N} found {n} shells , and {F} found {k} .
/
" let us put them on our castle ! " said {F} . together they had {sum} shells .
/
they put all {sum} shells on the sand castle . it looked [beautiful|like a real castle] .
/
then a big wave came and washed the castle away !
/
" oh no ! " said {N} . but then {he} <laughed> . " we can build another one tomorrow ! "
/
on the way home , {N} found one more shell , a little pink one . {he} kept it in {his} pocket .
"""

# Which placeholders belong to which entity the intro may introduce, and to which gendered role.
_ENTITY_OF = {"F": "friend", "f_kid": "friend", "a_f_kid": "friend", "A": "pet", "pet": "pet", "pet_habit": "pet",
              "obj": "obj", "color": "obj", "a_color": "obj", "obj_desc": "obj", "fds": "food", "food_adj": "food",
              "home": "home", "home_where": "home", "home_view": "home"}
_ENTITY_OF.update({f"f_{w}": "friend" for w in ("he", "him", "his", "himself")})
_ENTITY_OF.update({f"a_{w}": "pet" for w in ("he", "him", "his", "himself", "sound")})
_ROLE_BITS = {"N": 1, "kid": 1, "sib": 1, "F": 2, "f_kid": 2, "a_f_kid": 2, "P": 4, "A": 8, "X": 16, "S": 32, "s_kid": 32}
for _p, _bit in (("", 1), ("f_", 2), ("p_", 4), ("a_", 8), ("x_", 16), ("s_", 32)):
    _ROLE_BITS.update({_p + w: _bit for w in ("he", "him", "his", "himself")})
ROLES = {1: "protagonist", 2: "friend", 4: "parent", 8: "pet", 16: "extra", 32: "sibling"}
GENDERED = {"female": {"she", "her", "hers", "herself", "girl", "sister"},
            "male": {"he", "him", "his", "himself", "boy", "brother"}}
_FACTS = ("home", "pet", "obj", "friend", "food")
_PH = re.compile(r"\{(\w+)\}")


def _expand(line: str) -> list[str]:
    """All strings of a line whose [a|b] groups (nested or not) are expanded."""
    m = re.search(r"\[([^\[\]]*)\]", line)
    if not m:
        return [" ".join(line.split())]
    return [x for alt in m.group(1).split("|") for x in _expand(line[:m.start()] + alt + line[m.end():])]


def _parts(line: str) -> tuple:
    """A line as literal strings and tuples of choices (its top-level [..] groups), chosen per story."""
    parts, depth, start, alts = [], 0, 0, []
    for j, ch in enumerate(line):
        if ch == "[":
            if depth == 0:
                parts.append(line[start:j])
                start, alts = j + 1, []
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                alts.append(line[start:j])
                parts.append(tuple(x for a in alts for x in _expand(a)))
                start = j + 1
        elif ch == "|" and depth == 1:
            alts.append(line[start:j])
            start = j + 1
    parts.append(line[start:])
    out = []
    for p in parts:
        if isinstance(p, str):
            p = " ".join(p.split())
            if p:
                out.append(p)
        else:
            out.append(p)
    return tuple(out)


class _Section:
    def __init__(self, name: str, self_intro: frozenset):
        self.name, self.self_intro = name, self_intro
        self.steps: list[tuple[float, list[tuple[tuple, int, frozenset]]]] = []  # (p, [(parts, roles, entities)])

    def finish(self):
        used = {e for _, alts in self.steps for _, _, ents in alts for e in ents}
        self.needs = tuple(f for f in _FACTS if f in used and f not in self.self_intro)
        self.keys = frozenset(_PH.findall(" ".join(str(parts) for _, alts in self.steps for parts, _, _ in alts)))
        if self.keys & {"n", "k", "sum", "age", "n_fds", "k_fds", "rest_fds", "n_coins", "k_coins", "rest_coins"}:
            self.keys |= {"numbers"}
        return self


def _parse(text: str) -> dict[str, _Section]:
    macro = re.compile(r"<(\w+)>")
    sections, cur = {}, None
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("@"):
            name, *flags = line[1:].split()
            cur = sections[name] = _Section(name, frozenset(f[1:] for f in flags))
        elif line.startswith("/"):
            cur.steps.append((float(line[1:] or 1.0), []))
        else:
            while macro.search(line):
                line = macro.sub(lambda m: "[" + MACROS[m.group(1)] + "]", line)
            words = set(re.sub(r"[\[\]|]", " ", _PH.sub(" ", line)).split())
            bad = words & (GENDERED["female"] | GENDERED["male"])
            assert not bad, f"gendered words must come from slots: {bad} in {line!r}"
            keys = _PH.findall(line)
            roles = 1
            for k in keys:
                roles |= _ROLE_BITS.get(k, 0)
            cur.steps[-1][1].append((_parts(line), roles, frozenset(_ENTITY_OF[k] for k in keys if k in _ENTITY_OF)))
    return {k: s.finish() for k, s in sections.items()}


_SECTIONS = _parse(TEMPLATES)
_SPECIAL = {"opening", "ending"} | {f"fact_{f}" for f in _FACTS}
SCHEMAS = sorted(k for k in _SECTIONS if k not in _SPECIAL)
_SCHEMA_LIST = [_SECTIONS[k] for k in SCHEMAS]
_ENDINGS: dict[frozenset, list] = {}  # introduced entities -> ending alternatives that only use them


def _endings(present: frozenset) -> list:
    if present not in _ENDINGS:
        _ENDINGS[present] = [a for a in _SECTIONS["ending"].steps[0][1] if a[2] <= present]
    return _ENDINGS[present]


# ----------------------------------------------------------------------------- slots
def _pronouns(prefix: str, female: bool) -> dict[str, str]:
    words = ("she", "her", "her", "herself") if female else ("he", "him", "his", "himself")
    return dict(zip((prefix + w for w in ("he", "him", "his", "himself")), words))


_PRON = {(p, f): _pronouns(p, f) for p in ("", "f_", "p_", "a_", "x_", "s_") for f in (False, True)}


def _zipf(items: list, offset: float = 12.0) -> tuple[list, list, float]:
    """Items with weights 1/(rank + offset), in an order fixed by a constant seed: a few items are
    common and a long tail is rare (about 15x rarer for 180 names), like words in real text."""
    items = list(items)
    random.Random(len(items)).shuffle(items)
    cum, t = [], 0.0
    for j in range(len(items)):
        t += 1.0 / (j + offset)
        cum.append(t)
    return items, cum, t


_Z = {name: _zipf(tbl) for name, tbl in (("girls", GIRLS), ("boys", BOYS), ("pets", PET_NAMES), ("objects", OBJECTS),
                                         ("acts", ACTS), ("foods", FOODS), ("animals", ANIMALS), ("skills", SKILLS))}


def _slots(rng: random.Random, need: frozenset, gender: str | None = None) -> tuple[dict, dict]:
    """One story's slot table (the common slots and those in `need`) and its characters. Consumes
    the same random numbers whatever `gender` forces, so a forced-gender story differs only in
    gendered words and names."""
    r = rng.random

    def pick(seq):
        return seq[int(r() * len(seq))]

    def zpick(name, taken=(), u=None):  # one draw whatever the collisions, so forced genders stay aligned
        items, cum, t = _Z[name]
        j = bisect.bisect_right(cum, (r() if u is None else u) * t)
        while items[j] in taken:
            j = (j + 1) % len(items)
        return items[j]

    def pick_k(seq, k):  # k distinct items, cheaper than rng.sample for small k
        idx = []
        while len(idx) < k:
            j = int(r() * len(seq))
            if j not in idx:
                idx.append(j)
        return [seq[j] for j in idx]

    female = r() < 0.5
    if gender is not None:
        female = gender == "female"
    animal = r() < 0.25
    u = r()
    both = (zpick("girls", u=u), zpick("boys", u=u))  # others avoid both, so forcing a gender changes no one else
    s = {"N": both[0] if female else both[1]}
    s.update(_PRON["", female])
    kind, feat = zpick("animals")
    s["kid"], s["kid_feat"] = (kind, feat) if animal else ("girl" if female else "boy", pick(CHILD_FEATS))
    s["sib"] = "sister" if female else "brother"
    f_female = r() < 0.5
    s["F"] = F = zpick("girls" if f_female else "boys", both)
    s.update(_PRON["f_", f_female])
    f_kind = zpick("animals")[0]
    s["f_kid"] = f_kind if animal else ("girl" if f_female else "boy")
    s["a_f_kid"] = _art(s["f_kid"])
    s["P"], p_female = pick(PARENTS)
    s.update(_PRON["p_", p_female])
    s["pet"], sounds, habits = pick(PETS)
    s.update(a_sound=pick(sounds), pet_habit=pick(habits), A=zpick("pets"))
    a_female = r() < 0.5
    s.update(_PRON["a_", a_female])
    x_female = r() < 0.5
    s["X"] = ("Miss " if x_female else "Mister ") + pick(SURNAMES)
    s.update(_PRON["x_", x_female])
    s_female = r() < 0.5
    S = zpick("girls" if s_female else "boys", both + (F,))
    s.update(S=S, s_kid="sister" if s_female else "brother")
    s.update(_PRON["s_", s_female])

    s["obj"], s["obj_desc"] = obj = zpick("objects")
    s["color"], s["c2"] = pick_k(COLORS, 2)
    s["a_color"] = _art(s["color"])
    s["place"], s["in_place"], s["place_desc"] = pick(PLACES)
    s["home"] = pick(HOMES)
    s["home_where"], s["home_view"] = pick(HOME_WHERE)
    fd, fds, s["food_adj"] = zpick("foods")
    s["fds"] = fds
    s["act"], s["act_ed"], s["act_ing"] = act = zpick("acts")
    s["act2"], s["act2_ed"], _ = zpick("acts", (act,))
    s["day"] = pick(DAYS)
    # The rest only where the schema uses it (most fillers belong to one schema): drawing them all
    # would triple the cost of a story.
    if "obj2" in need:
        s["obj2"] = zpick("objects", (obj,))[0]
    if "s1" in need:
        s["s1"], s["s2"], s["s3"] = pick_k(SPOTS, 3)
    if "o1" in need:
        s["o1"], s["o2"] = pick_k(OUT_SPOTS, 2)
    if "numbers" in need:
        n = 3 + int(r() * 7)
        k = 1 + int(r() * (n - 1))
        s.update(n=NUM[n], k=NUM[k], sum=NUM[n + k], age=NUM[3 + int(r() * 7)])
        for key, m in (("n", n), ("k", k), ("rest", n - k)):
            s[key + "_fds"] = f"{NUM[m]} {fd if m == 1 else fds}"
            s[key + "_coins"] = f"{NUM[m]} {'coin' if m == 1 else 'coins'}"
    if "cnt" in need:
        s["cnt"] = _COUNTS[5 + int(r() * 6)]
    if "sheep" in need:
        s["sheep"] = _SHEEP[4 + int(r() * 6)]
    if "dest" in need:
        s["dest"], s["at_dest"], sights = pick(DESTS)
        s["d1"], s["d2"], s["d3"] = pick_k(sights, 3)
        s["tr"], s["in_tr"] = pick(TRANSPORT)
    if "sk" in need or "sk_ing" in need:
        s["sk"], s["sk_ed"], s["sk_ing"] = zpick("skills")
    if "inst" in need:
        s["inst"] = pick(INSTRUMENTS)
    if "dm" in need:
        dream = pick(DREAMS)
        s["dm"] = dream[0]
        s["dm1"], s["dm2"] = pick_k(dream[1:], 2)
    if "mg" in need:
        s["mg"], s["mg_adj"] = pick(MAGIC), pick(MAGIC_ADJ)
    if "seed" in need:
        s["seed"], s["seed_grown"] = pick(SEEDS)
    if "cloth" in need:
        s["cloth"] = pick(CLOTHES)
    if "bake" in need:
        s["bake_a"], s["bake"], s["b_was"], s["b_them"] = pick(BAKES)
        s["i1"], s["i2"], s["i3"] = pick_k(INGREDIENTS, 3)
    if "m1" in need:
        s["m1"], s["m2"], s["m3"] = pick_k(MEALS, 3)
    if "brk" in need:
        s["brk"] = pick(BREAKABLES)
    if "bld" in need:
        s["bld"], s["bld_n"], s["bld_mat"] = pick(BUILDS)
    if "ill" in need:
        s["ill"] = pick(ILLS)
    if "noise" in need:
        s["noise"], s["cause"] = pick(NOISES)
    if "W" in need:
        s["W"], s["w_part"], s["w_food"], s["w_move"] = pick(WILD)
    if "wise" in need:
        s["wise"] = pick(WISE)
    if "topic" in need:
        s["topic"], s["role"], s["made"] = pick(TOPICS)
    genders = {"protagonist": female, "friend": f_female, "parent": p_female, "pet": a_female,
               "extra": x_female, "sibling": s_female}
    names = {"protagonist": s["N"], "friend": F, "parent": s["P"], "pet": s["A"], "extra": s["X"], "sibling": S}
    return s, {"animal": animal, "genders": genders, "names": names}


# ----------------------------------------------------------------------------- stories
_SPLITS = {"train": 0, "val": 1}


def _rng(seed: int, split: str, i: int) -> random.Random:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if not 0 <= i < 1 << 48:
        raise ValueError(f"story index out of range: {i}")
    # An injective integer key: distinct (seed mod 2^64, split, i) never share a stream, unlike a sum.
    return random.Random(((seed % (1 << 64)) << 52) | (_SPLITS[split] << 48) | i)


def _compose(rng: random.Random, gender: str | None) -> tuple[list[str], dict]:
    r = rng.random
    schema = _SCHEMA_LIST[int(r() * len(_SCHEMA_LIST))]
    s, info = _slots(rng, schema.keys, gender)
    facts = [f for f in _FACTS if f in schema.needs or (f not in schema.self_intro and r() < 0.35)]
    rng.shuffle(facts)  # the order of introductions varies: a reader must look them up, not count
    steps = list(_SECTIONS["opening"].steps)
    for f in facts:
        steps += _SECTIONS["fact_" + f].steps
    steps += schema.steps
    ending = _SECTIONS["ending"].steps
    steps += [(1.0, _endings(frozenset(facts) | schema.self_intro)), ending[1]]
    out, roles = [], 0
    for p, alts in steps:
        if p < 1.0 and r() >= p:
            continue
        parts, bits, _ = alts[int(r() * len(alts))]
        roles |= bits
        for part in parts:
            out.append(part if part.__class__ is str else part[int(r() * len(part))])
    tokens = " ".join(out).format_map(s).split()
    present = [name for bit, name in ROLES.items() if roles & bit]
    meta = {"schema": schema.name, "animal": info["animal"], "object": f'{s["color"]} {s["obj"]}',
            "characters": {role: {"name": info["names"][role], "gender": "female" if info["genders"][role] else "male"}
                           for role in present}}
    return tokens, meta


def story_with_meta(seed: int, split: str, i: int, gender: str | None = None) -> tuple[list[str], dict]:
    """Story i of a split and its metadata: the schema, the favourite object ("red kite") and the
    characters that may appear in it (role -> name, gender). `gender` ("female"/"male") forces the protagonist's gender and changes
    nothing else but gendered words and names (for tests)."""
    rng = _rng(seed, split, i)
    while True:  # a rare out-of-range length is redrawn from the same stream: still deterministic
        tokens, meta = _compose(rng, gender)
        if 100 <= len(tokens) <= 400:
            return tokens, meta


def story_tokens(seed: int, split: str, i: int) -> list[str]:
    """Story i of `split` ("train" or "val") as a list of tokens, a pure function of its arguments."""
    return story_with_meta(seed, split, i)[0]


def stories(seed: int, split: str, start: int, stop: int) -> Iterator[list[str]]:
    for i in range(start, stop):
        yield story_tokens(seed, split, i)


def _vocab() -> list[str]:
    """Every token a story can contain: template words plus every word of every table."""
    words = set()
    for sec in _SECTIONS.values():
        for _, alts in sec.steps:
            for parts, _, _ in alts:
                for p in parts:
                    for text in ((p,) if isinstance(p, str) else p):
                        words.update(_PH.sub(" ", text).split())

    def walk(x):
        if isinstance(x, str):
            words.update(x.split())
        elif isinstance(x, (list, tuple, dict)):
            for y in (x.values() if isinstance(x, dict) else x):
                walk(y)

    walk([GIRLS, BOYS, PET_NAMES, SURNAMES, ANIMALS, CHILD_FEATS, PETS, [p for p, _ in PARENTS], COLORS, OBJECTS,
          PLACES, HOMES, HOME_WHERE, SPOTS, OUT_SPOTS, FOODS, MEALS, INGREDIENTS, BAKES, NUM[1:], DAYS, ACTS,
          SKILLS, DESTS, TRANSPORT, INSTRUMENTS, DREAMS, MAGIC, MAGIC_ADJ, SEEDS, CLOTHES, BREAKABLES, BUILDS, ILLS,
          NOISES, WILD, WISE, TOPICS, _COUNTS, _SHEEP, list(_PRON.values()),
          "a an Miss Mister coin coins girl boy sister brother"])
    return sorted(words)


VOCAB: list[str] = _vocab()
PUNCT = frozenset(". , ! ? \" 's :".split())
_SPEECH = {"said", "asked", "shouted", "cried", "whispered", "called", "replied", "wondered", "yelled"}


def detokenize(tokens: list[str]) -> str:
    """Readable text: punctuation attached, quotes paired, sentences and speech capitalized."""
    out, in_quote, cap, prev = [], False, True, ""
    for j, t in enumerate(tokens):
        if t == '"':
            if in_quote:
                out.append('"')
                cap = prev in ".!?"  # a new sentence may follow the quote ...
                nxt = tokens[j + 1: j + 3]
                if nxt and (nxt[0] in _SPEECH or nxt[-1] in _SPEECH):  # ... but not in '"Go!" she said'
                    cap = False
            else:
                out.append(' "' if out else '"')
                cap = True
            in_quote = not in_quote
            prev = t
            continue
        w = t
        if cap and t not in PUNCT:
            w = t[0].upper() + t[1:]
            cap = False
        if w == "i":
            w = "I"
        if t in ".!?":
            cap = True
        glue = t in PUNCT or (prev == '"' and in_quote) or not out
        out.append(w if glue else " " + w)
        prev = t
    return "".join(out)


# ----------------------------------------------------------------------------- main
def main():
    from config import Parser  # one-line errors, exit code 2
    ap = Parser(description="Print sample stories and time the generator.")
    ap.add_argument("--n", type=int, default=3, help="stories to print")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=sorted(_SPLITS))
    ap.add_argument("--time", type=int, default=5000, help="stories to time (0 skips)")
    args = ap.parse_args()
    for i in range(args.n):
        tokens, meta = story_with_meta(args.seed, args.split, i)
        print(f"--- story {i} ({meta['schema']}, {len(tokens)} tokens)\n{detokenize(tokens)}\n")
    n_words = sum(1 for w in VOCAB if w not in PUNCT)
    print(f"vocabulary: {len(VOCAB)} tokens ({n_words} words + {len(VOCAB) - n_words} punctuation), "
          f"{len(SCHEMAS)} schemas")
    if args.time:
        t0, c0 = time.perf_counter(), time.process_time()
        total = sum(len(story_tokens(args.seed, args.split, i)) for i in range(args.time))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"{args.time / dt:,.0f} stories/s on one core ({args.time / dc:,.0f} per CPU-second), "
              f"{total / dt:,.0f} tokens/s, {total / args.time:.1f} tokens/story")


if __name__ == "__main__":
    main()
