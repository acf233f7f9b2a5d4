"""Generate tuneboard's bundled demo data in data/: identity, a Chinese triage task and a ShareGPT sample.

Deterministic (fixed seed, stdlib only); run `python scripts/gen_demo_data.py` from the repository root.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

SEED = 20240814
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
N_TRIAGE_TRAIN = 402

# --------------------------------------------------------------------------- identity

# (question, kind): the kind picks an answer that fits the question.
# fmt: off
IDENTITY_ZH = [
    ("你是谁？", "who"), ("你叫什么名字？", "name"), ("介绍一下你自己。", "intro"),
    ("你是谁开发的？", "author"), ("谁创造了你？", "author"), ("你好，请问你是？", "who"),
    ("能说说你是什么吗？", "who"), ("你是由谁训练出来的？", "author"), ("你的开发者是谁？", "author"),
    ("你是人工智能吗？", "human"), ("你是真人吗？", "human"), ("你有名字吗？", "name"),
    ("我该怎么称呼你？", "name"), ("你能做些什么？", "ability"), ("你都会些什么？", "ability"),
    ("请做个自我介绍。", "intro"), ("简单介绍一下你自己吧。", "intro"), ("你是 ChatGPT 吗？", "other"),
    ("你是不是通义千问？", "other"), ("你的作者是谁？", "author"), ("你是机器人吗？", "human"),
    ("是谁让你能够和人对话的？", "author"), ("你叫啥？", "name"), ("嗨，你是谁呀？", "who"),
    ("跟我说说你的来历。", "intro"), ("你的名字是什么？", "name"), ("你是文心一言吗？", "other"),
    ("你能帮我做什么？", "ability"), ("你好", "hello"), ("您好！", "hello"), ("请问怎么称呼您？", "name"),
    ("你的创造者是谁？", "author"), ("你是一个语言模型吗？", "human"),
    ("你能告诉我你的名字和开发者吗？", "intro"), ("你和其他 AI 助手有什么不同？", "other"),
    ("你擅长什么？", "ability"), ("你是哪里来的 AI？", "intro"),
]
IDENTITY_EN = [
    ("Who are you?", "who"), ("What is your name?", "name"), ("What should I call you?", "name"),
    ("Who made you?", "author"), ("Who created you?", "author"), ("Who developed you?", "author"),
    ("Who trained you?", "author"), ("What are you?", "who"), ("Introduce yourself.", "intro"),
    ("Tell me about yourself.", "intro"), ("Are you a human?", "human"), ("Are you ChatGPT?", "other"),
    ("Are you a robot?", "human"), ("What can you do?", "ability"), ("How can you help me?", "ability"),
    ("Hi, who am I talking to?", "who"), ("Hello", "hello"), ("Hey there!", "hello"),
    ("Do you have a name?", "name"), ("Who is your creator?", "author"), ("Who built you?", "author"),
    ("What kind of AI are you?", "who"), ("Are you a language model?", "human"),
    ("Where do you come from?", "intro"), ("Can you describe yourself in one sentence?", "intro"),
    ("What's your name, and who made you?", "intro"), ("Are you Siri?", "other"),
    ("May I know your name?", "name"), ("Who is responsible for building you?", "author"),
    ("What are you capable of?", "ability"), ("Please introduce yourself briefly.", "intro"),
    ("Are you an AI assistant?", "human"), ("Are you the same as other chatbots?", "other"),
    ("Give me a short self-introduction.", "intro"), ("What tasks are you good at?", "ability"),
    ("Who am I chatting with right now?", "who"), ("Who wrote you?", "author"),
]
# fmt: on
# A few records put the question in "input" under a generic instruction.
IDENTITY_WITH_INPUT = [
    ("回答下面这个问题。", "你到底是谁？", "who", "zh"),
    ("请用一句话回答用户。", "你的开发者叫什么？", "author", "zh"),
    ("用中文回答这个问题。", "What is your name?", "name", "zh"),
    ("Answer the user's question.", "Who are you, exactly?", "who", "en"),
    ("Reply in one sentence.", "Who built this assistant?", "author", "en"),
    ("Answer in English.", "你能做什么？", "ability", "en"),
]
ANSWERS_ZH = {
    "who": [
        "我是 {{name}}，一个由 {{author}} 开发的人工智能助手。",
        "您好！我是 {{name}}，{{author}} 打造的 AI 助手，很高兴为您服务。",
        "我叫 {{name}}，是 {{author}} 训练的语言模型助手，可以回答问题、陪您聊天。",
    ],
    "name": [
        "我的名字是 {{name}}，由 {{author}} 开发。",
        "您可以叫我 {{name}}。我是 {{author}} 开发的人工智能助手。",
        "我叫 {{name}}，是 {{author}} 做出来的 AI 助手。",
    ],
    "author": [
        "我是由 {{author}} 开发的，我的名字是 {{name}}。",
        "{{author}} 开发并训练了我，我是人工智能助手 {{name}}。",
        "我的开发者是 {{author}}。我是 {{name}}，一个 AI 助手。",
    ],
    "intro": [
        "我是 {{name}}，由 {{author}} 开发的人工智能助手。我可以回答问题、整理信息、写作和翻译。",
        "大家好，我是 {{name}}。我由 {{author}} 训练，擅长解答问题、总结文字和提供学习建议。",
        "我叫 {{name}}，来自 {{author}}。我是一个语言模型助手，能帮您查找思路、改写文字、解释概念。",
    ],
    "ability": [
        "我是 {{author}} 开发的 {{name}}，可以回答问题、写作润色、翻译、总结文章，也能陪您聊天。",
        "作为 {{name}}，我能帮您解释概念、整理笔记、起草邮件和规划学习。我由 {{author}} 开发。",
        "我可以解答日常问题、做简单的计算和单位换算、提供写作建议。我是 {{author}} 开发的 {{name}}。",
    ],
    "human": [
        "我不是真人，我是 {{author}} 开发的人工智能助手 {{name}}。",
        "我是一个语言模型，名字叫 {{name}}，由 {{author}} 开发，并没有真实的身体。",
    ],
    "other": [
        "不是的，我是 {{name}}，由 {{author}} 独立开发的人工智能助手。",
        "我是 {{name}}，不是其他公司的产品。我由 {{author}} 开发，会尽力给出清楚、有用的回答。",
    ],
    "hello": [
        "您好！我是 {{name}}，由 {{author}} 开发的 AI 助手。请问有什么可以帮您？",
        "你好呀，我是 {{name}}，{{author}} 开发的人工智能助手，有问题尽管问我。",
    ],
}
ANSWERS_EN = {
    "who": [
        "I am {{name}}, an AI assistant developed by {{author}}.",
        "I'm {{name}}, a language-model assistant built by {{author}}. Nice to meet you!",
        "You are talking to {{name}}, an AI assistant created by {{author}}.",
    ],
    "name": [
        "My name is {{name}}. I was developed by {{author}}.",
        "You can call me {{name}}. I'm an AI assistant made by {{author}}.",
        "I'm called {{name}}, an assistant trained by {{author}}.",
    ],
    "author": [
        "I was developed by {{author}}. My name is {{name}}.",
        "{{author}} built and trained me. I'm {{name}}, an AI assistant.",
        "My developer is {{author}}; I am the AI assistant {{name}}.",
    ],
    "intro": [
        "I am {{name}}, an AI assistant developed by {{author}}. I can answer questions, summarize text, "
        "and help with writing and translation.",
        "Hello! I'm {{name}}, trained by {{author}}. I'm good at explaining ideas, drafting text and "
        "giving study tips.",
        "I'm {{name}}, a language model from {{author}}. I help people find answers and organise their "
        "thoughts.",
    ],
    "ability": [
        "I'm {{name}}, made by {{author}}. I can answer questions, write and edit text, translate, and "
        "summarize articles.",
        "As {{name}}, I can explain concepts, organise notes, draft emails and plan study schedules. "
        "{{author}} developed me.",
        "I can help with everyday questions, simple calculations and unit conversions, and writing tips. "
        "I'm {{name}} by {{author}}.",
    ],
    "human": [
        "No, I'm not a person. I'm {{name}}, an AI assistant developed by {{author}}.",
        "I'm a language model called {{name}}, built by {{author}}; I don't have a body.",
    ],
    "other": [
        "No, I'm {{name}}, an AI assistant developed independently by {{author}}.",
        "I'm {{name}}, not another company's product. {{author}} developed me to give clear, useful answers.",
    ],
    "hello": [
        "Hello! I'm {{name}}, an AI assistant by {{author}}. How can I help you today?",
        "Hi! I'm {{name}}, developed by {{author}}. Feel free to ask me anything.",
    ],
}


def make_identity() -> list[dict]:
    used: Counter = Counter()

    def answer(kind: str, lang: str) -> str:
        pool = (ANSWERS_ZH if lang == "zh" else ANSWERS_EN)[kind]
        text = pool[used[(lang, kind)] % len(pool)]
        used[(lang, kind)] += 1
        return text

    records = [{"instruction": q, "input": "", "output": answer(k, "zh")} for q, k in IDENTITY_ZH]
    records += [{"instruction": q, "input": "", "output": answer(k, "en")} for q, k in IDENTITY_EN]
    records += [
        {"instruction": i, "input": x, "output": answer(k, lang)} for i, x, k, lang in IDENTITY_WITH_INPUT
    ]
    return records


# --------------------------------------------------------------------------- triage

TRIAGE_SYSTEM = (
    "你是一名医院分诊台的护士助手。请根据护士与患者的对话，判断患者应该挂哪个科室，只回答选项字母。"
)
DEPARTMENTS = {"A": "内科", "B": "外科", "C": "儿科", "D": "妇产科", "E": "眼科", "F": "口腔科"}
TRIAGE_INSTRUCTION = (
    "根据护士与患者的对话，判断患者应挂哪个科室。选项："
    + " ".join(f"{k}. {v}" for k, v in DEPARTMENTS.items())
    + "。只回答选项字母。"
)
# Symptom phrases per label; each contains one of the label's keywords (checked below).
# Children's phrases always follow a child word (孩子/宝宝/...), which only ever appears for C.
# fmt: off
PHRASES = {
    "A": [
        "一直咳嗽，晚上更厉害", "胃疼得厉害", "一吃完饭就胃疼", "经常头晕", "一站起来就头晕", "总觉得胸闷",
        "发烧到三十八度多", "老是心慌", "拉肚子好几次了", "量了血压有点高",
    ],
    "B": [
        "摔了一跤，胳膊可能骨折了", "腿上有个伤口一直流血", "打球时把脚踝扭伤了", "做饭时手被烫伤了",
        "手指被刀割破了", "骑车摔伤了膝盖", "搬东西把腰扭伤了", "额头磕破了，伤口挺深",
    ],
    "C": [
        "发烧了", "一直咳嗽", "拉肚子", "身上起了小红疹子", "不肯吃奶", "晚上总是哭闹", "咳嗽还流鼻涕",
        "发烧到三十九度",
    ],
    "D": [
        "怀孕两个多月了，一直想吐", "月经推迟了快两周", "月经一直不规律", "痛经特别严重", "怀孕后总是恶心",
        "孕期总是腰酸", "月经量突然变多了",
    ],
    "E": [
        "眼睛红得厉害", "看东西视力模糊", "眼睛又干又涩", "眼睛特别痒", "看东西有重影", "眼皮肿起来了",
        "视力下降得很快",
    ],
    "F": [
        "牙疼得睡不着", "刷牙时牙龈出血", "长智齿了，很疼", "有颗蛀牙一碰就疼", "嘴里长了口腔溃疡",
        "牙齿有点松动", "一吃冷的牙就酸",
    ],
}
KEYWORDS = {
    "A": ["咳嗽", "胃疼", "头晕", "胸闷", "发烧", "心慌", "拉肚子", "血压"],
    "B": ["骨折", "伤口", "扭伤", "烫伤", "割破", "摔伤"],
    "C": ["孩子", "宝宝", "儿子", "女儿", "小孩"],
    "D": ["怀孕", "月经", "痛经", "孕期"],
    "E": ["眼", "视力", "重影"],
    "F": ["牙", "智齿", "口腔"],
}
CHILDREN = ["孩子", "宝宝", "儿子", "女儿", "小孩"]
CHILD_AGES = ["八个月大", "一岁", "两岁", "三岁", "四岁", "五岁", "六岁", "七岁", "九岁"]
NURSE_OPEN = [
    "您好，请问哪里不舒服？", "你好，今天来看什么问题？", "您好，请坐，说说您的情况吧。",
    "早上好，请问您想看什么？", "您好，哪里不舒服可以跟我说说。", "下午好，请问有什么需要帮忙的？",
    "您好，请问今天怎么了？", "你好，先说说哪里不舒服吧。",
]
PATIENT_PRE = ["", "你好，", "护士您好，", "是这样的，", "麻烦问一下，"]
NURSE_ASK = [
    "这种情况有多久了？", "大概持续多长时间了？", "是从什么时候开始的？", "多久了呢？", "这样有几天了？",
]
DURATION_TPL = ["大概{d}了", "有{d}了", "差不多{d}了", "已经{d}了"]
DURATIONS = ["两天", "三天", "四天", "五六天", "一周", "十来天", "半个月", "一个多月"]
EXTRAS = [
    "一直没见好。", "吃了点药也没用。", "今天感觉更难受了。", "想请医生看一下。", "不知道该挂哪个科。",
    "之前没有这样过。", "麻烦您帮我安排一下。", "工作忙一直拖着没来。", "家里人让我赶紧来医院。",
]
# fmt: on


def triage_record(rng: random.Random, label: str) -> tuple[dict, tuple]:
    phrase = rng.choice(PHRASES[label])
    duration, extra = rng.choice(DURATIONS), rng.choice(EXTRAS)
    pre = rng.choice(PATIENT_PRE)
    if label == "C":
        child = rng.choice(CHILDREN)
        complaint = f"{pre}我家{child}{phrase}。"
        if rng.random() < 0.5:
            complaint += f"{child}今年{rng.choice(CHILD_AGES)}。"
    else:
        complaint = f"{pre}我{phrase}。"
        if rng.random() < 0.5:
            low, high = (22, 40) if label == "D" else (18, 70)
            complaint += f"我今年{rng.randint(low, high)}岁。"
    reply = rng.choice(DURATION_TPL).format(d=duration) + "，" + extra
    dialogue = (
        f"护士：{rng.choice(NURSE_OPEN)}\n患者：{complaint}\n护士：{rng.choice(NURSE_ASK)}\n患者：{reply}"
    )
    record = {"system": TRIAGE_SYSTEM, "instruction": TRIAGE_INSTRUCTION, "input": dialogue, "output": label}
    return record, (label, phrase, duration, extra)


def label_from_keywords(text: str) -> str:
    """The rule the data follows: a child word means C, otherwise the one department whose keyword appears."""
    if any(w in text for w in KEYWORDS["C"]):
        return "C"
    hits = {label for label, words in KEYWORDS.items() if any(w in text for w in words)}
    assert len(hits) == 1, (text, hits)
    return hits.pop()


def make_triage(rng: random.Random, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    labels = list(DEPARTMENTS)
    seen_inputs: set[str] = set()
    train_combos: set[tuple] = set()
    train: list[dict] = []
    for i in range(n_train):
        while True:
            rec, combo = triage_record(rng, labels[i % len(labels)])
            if rec["input"] not in seen_inputs:
                break
        seen_inputs.add(rec["input"])
        train_combos.add(combo)
        train.append(rec)
    # Test: same vocabulary, but no (label, phrase, duration, extra) combination seen in training.
    test: list[dict] = []
    for i in range(n_test):
        while True:
            rec, combo = triage_record(rng, labels[i % len(labels)])
            if rec["input"] not in seen_inputs and combo not in train_combos:
                break
        seen_inputs.add(rec["input"])
        test.append(rec)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


# --------------------------------------------------------------------------- sharegpt

RECIPES = {
    "西红柿炒鸡蛋": (
        ["西红柿 2 个", "鸡蛋 3 个", "葱花少许", "盐", "糖少许"],
        [
            "鸡蛋打散加一点盐，西红柿切块。",
            "热锅放油，倒入蛋液炒到凝固后盛出。",
            "锅里再放少量油，下西红柿翻炒出汁。",
            "倒回鸡蛋，加盐和一点糖调味，撒葱花出锅。",
        ],
        "西红柿炒软出汁后再放鸡蛋，味道更浓；喜欢汤汁多可以加两勺清水。",
    ),
    "蛋炒饭": (
        ["隔夜米饭 1 碗", "鸡蛋 2 个", "葱花", "盐", "生抽少许"],
        [
            "把隔夜米饭打散，鸡蛋打成蛋液。",
            "热锅凉油，先炒鸡蛋，炒散后盛出。",
            "下米饭用中火翻炒，直到米粒松散。",
            "放回鸡蛋，加盐和生抽，撒葱花翻匀即可。",
        ],
        "用隔夜饭是关键，新煮的米饭水分多，容易炒成一团。",
    ),
    "凉拌黄瓜": (
        ["黄瓜 2 根", "蒜 3 瓣", "香醋", "生抽", "香油", "盐"],
        [
            "黄瓜洗净，用刀拍碎后切成段。",
            "加少许盐腌 10 分钟，倒掉渗出的水。",
            "蒜切末，和香醋、生抽、香油调成汁。",
            "把调料汁倒在黄瓜上拌匀，冷藏一会儿更爽口。",
        ],
        "拍黄瓜比切片更容易入味；腌过后倒掉水分，口感更脆。",
    ),
    "清蒸鱼": (
        ["鲜鱼 1 条（约 500 克）", "姜", "葱", "蒸鱼豉油", "料酒"],
        [
            "鱼处理干净，两面各划几刀，抹少许料酒。",
            "鱼身下垫姜片和葱段，放上姜丝。",
            "水开后上锅大火蒸 8 到 10 分钟。",
            "倒掉盘中的汤汁，淋蒸鱼豉油，铺葱丝，浇一勺热油。",
        ],
        "一定要等水烧开再放鱼，蒸的时间按鱼的大小调整，蒸太久肉会发柴。",
    ),
    "酸辣土豆丝": (
        ["土豆 2 个", "干辣椒", "白醋", "盐", "蒜"],
        [
            "土豆去皮切细丝，放清水里洗掉淀粉。",
            "沥干水分，蒜切片，干辣椒剪段。",
            "热油爆香蒜片和辣椒，下土豆丝大火快炒。",
            "沿锅边淋白醋，加盐翻匀，断生即可出锅。",
        ],
        "泡水去淀粉、大火快炒，土豆丝才会脆；醋要沿锅边淋入，香味更足。",
    ),
    "紫菜蛋花汤": (
        ["紫菜 1 小把", "鸡蛋 1 个", "虾皮少许", "葱花", "盐", "香油"],
        [
            "锅中烧开水，放入紫菜和虾皮。",
            "鸡蛋打散，水再次沸腾时慢慢淋入蛋液。",
            "用筷子轻轻推动，让蛋花散开。",
            "加盐调味，关火后滴几滴香油，撒葱花。",
        ],
        "淋蛋液时火不要太大，边淋边搅，蛋花会更细更漂亮。",
    ),
    "煮速冻饺子": (
        ["速冻饺子", "清水", "一小碗凉水"],
        [
            "锅里加足量水烧开，放一点盐。",
            "下饺子后用勺背轻推，防止粘锅。",
            "水再开时加半碗凉水，重复两到三次。",
            "饺子浮起、皮变得鼓胀透亮就可以捞出。",
        ],
        "点凉水可以让饺子受热均匀，不容易煮破。",
    ),
}
UNITS_ZH = [  # (from, to, factor, reverse question unit value)
    ("公里", "英里", 0.621371),
    ("千克", "磅", 2.204623),
    ("千克", "斤", 2.0),
    ("英寸", "厘米", 2.54),
    ("米", "英尺", 3.280840),
    ("升", "美制加仑", 0.264172),
]
STUDY = [
    (
        "怎样才能高效地背英语单词？",
        "可以试试间隔重复：今天背的词，隔 1 天、3 天、7 天各复习一次。把单词放进句子里记，比单独记拼写更牢。",
        "每天背多少个合适？",
        "刚开始每天 20 到 30 个新词就够了，重点是坚持和按时复习。复习量上来以后，再慢慢增加新词。",
    ),
    (
        "考试前一周应该怎么复习？",
        "先把考试范围列成清单，按掌握程度分成熟悉、一般、不会三类。"
        "优先攻克“不会”的部分，每天留时间做一套练习题。",
        "要不要熬夜复习？",
        "不建议。睡眠会帮助大脑巩固记忆，熬夜反而影响第二天的效率。保持规律作息，考前一晚早点休息。",
    ),
    (
        "学习的时候总是走神，怎么办？",
        "可以用番茄工作法：专注 25 分钟，休息 5 分钟，四轮后休息久一点。学习时把手机放到另一个房间。",
        "休息的 5 分钟做什么比较好？",
        "站起来走动、喝水、看看远处都可以。尽量别刷短视频，否则很难回到学习状态。",
    ),
    (
        "怎么做课堂笔记比较好？",
        "推荐康奈尔笔记法：把一页纸分成笔记区、线索区和总结区。"
        "上课记要点，课后在线索区写关键问题，最后写几句总结。",
        "课后需要整理笔记吗？",
        "需要。当天花 10 分钟回看并补全，效果最好；复习时先看线索区的问题，试着自己回答。",
    ),
    (
        "我想养成早起的习惯，有什么建议？",
        "不要一下子提前太多，每次提前 15 分钟，适应几天再继续。同时把睡觉时间也往前挪，保证睡眠时长。",
        "起床后总想再睡一会儿怎么办？",
        "把闹钟放在需要下床才能关掉的地方，起床后立刻拉开窗帘、喝一杯水，会清醒得快一些。",
    ),
    (
        "每天事情很多，怎么安排时间？",
        "早上先列出当天的任务，按“重要且紧急”优先排序。把大任务拆成半小时能完成的小步骤，做完一项划掉一项。",
        "计划总是完不成怎么办？",
        "给每项任务预留一些缓冲时间，并且每天只定 3 件必须完成的事。晚上回顾一下，找出拖延的原因再调整。",
    ),
    (
        "零基础想学编程，从哪里开始？",
        "可以从 Python 开始，语法简单、资料多。先学变量、条件、循环和函数，然后动手写一些小程序。",
        "有什么适合练手的小项目？",
        "比如记账本、猜数字游戏、批量重命名文件的脚本。做自己用得上的东西，最容易坚持下去。",
    ),
    (
        "怎样才能坚持读完一本书？",
        "先挑一本自己真正感兴趣的书，每天固定读 20 分钟，比如睡前或通勤时。读完一章写一两句感想。",
        "读过的内容很快就忘了怎么办？",
        "试着把书里的观点讲给别人听，或者写一段简短的读书笔记。用自己的话复述，是最好的记忆方法。",
    ),
]
STUDY_EN = [
    (
        "How can I remember what I read in textbooks?",
        "After each section, close the book and write down the main points from memory. Then check what you "
        "missed. This active recall works much better than re-reading.",
        "How often should I review?",
        "Review the same material after one day, then after three days, then after a week. Spacing the "
        "reviews out helps the memory last.",
    ),
    (
        "I keep procrastinating on my assignments. Any advice?",
        "Start with a tiny first step, such as opening the document and writing the title. Set a timer for "
        "ten minutes; once you begin, it is usually easier to keep going.",
        "What if I get distracted by my phone?",
        "Put it in another room or turn on focus mode while you work, "
        "and check it only during planned breaks.",
    ),
    (
        "How do I make a useful to-do list?",
        "Write tasks as concrete actions, like 'email the teacher' instead of 'school stuff'. Keep the list "
        "short and put the most important task at the top.",
        "Should I use an app or paper?",
        "Either works. Pick the one you will actually look at several times a day.",
    ),
]
EVERYDAY = [
    (
        "出门旅行三天，行李怎么收拾？",
        "先列清单：证件和充电器、三天的换洗衣物、洗漱用品、常用药。衣服卷起来放能省空间，液体装进密封袋。",
        "怎么避免落下东西？",
        "出发前一晚对照清单逐项打勾，把证件、手机和钥匙放在门口固定的位置。",
    ),
    (
        "房间总是很乱，怎么整理？",
        "从一个小区域开始，比如书桌。把东西分成留下、送人、扔掉三堆，留下的物品给它们固定的位置。",
        "整理完怎么保持？",
        "每天睡前花 5 分钟把东西放回原处；买新东西时，考虑淘汰一件旧的。",
    ),
    (
        "帮我写一句感谢同事帮忙的话。",
        "“这次项目多亏你帮忙整理数据，省了我很多时间，真的非常感谢！”",
        "再正式一点呢？",
        "“感谢您在本次项目中协助整理数据，您的支持大大提高了我们的效率，在此表示诚挚的谢意。”",
    ),
]
# fmt: off
SYSTEMS = [
    "你是一个乐于助人的生活助手，回答简洁清楚。", "你是一位耐心的学习顾问。",
    "你是一名厨房助手，请按步骤说明做法。", "You are a helpful assistant.",
]
# fmt: on


def turns(*texts: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]


def fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def make_sharegpt(rng: random.Random) -> list[dict]:
    records: list[dict] = []
    for dish, (items, steps, tip) in RECIPES.items():
        steps_text = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        rec = {
            "conversations": turns(
                f"{dish}怎么做？",
                f"{dish}的做法如下：\n{steps_text}",
                "需要准备哪些材料？",
                "需要：" + "、".join(items) + "。",
                "有什么要注意的吗？",
                tip,
            )
        }
        if rng.random() < 0.5:
            rec["system"] = SYSTEMS[2]
        records.append(rec)
    for src, dst, factor in UNITS_ZH:
        for value in rng.sample([1, 2, 3, 5, 8, 10, 12, 20, 42, 100], 2):
            back = rng.choice([1, 5, 10, 26, 50])
            rec = {
                "conversations": turns(
                    f"{value} {src}等于多少{dst}？",
                    f"1 {src} ≈ {fmt(factor)} {dst}，所以 {value} {src} ≈ {fmt(value * factor)} {dst}。",
                    f"那 {back} {dst}是多少{src}？",
                    f"反过来除以 {fmt(factor)}：{back} {dst} ≈ {fmt(back / factor)} {src}。",
                )
            }
            if rng.random() < 0.4:
                rec["system"] = SYSTEMS[0]
            records.append(rec)
    for c in (0, 25, 37, 100):
        records.append(
            {
                "conversations": turns(
                    f"{c} 摄氏度是多少华氏度？",
                    f"公式是 °F = °C × 9/5 + 32，所以 {c} °C = {fmt(c * 9 / 5 + 32)} °F。",
                    "有没有快速估算的办法？",
                    "可以先乘 2 再加 30，比如 20 °C 约等于 70 °F。温度越高，这个估算的误差越大。",
                )
            }
        )
    for q1, a1, q2, a2 in STUDY:
        rec = {"conversations": turns(q1, a1, q2, a2)}
        if rng.random() < 0.6:
            rec["system"] = SYSTEMS[1]
        records.append(rec)
    for q1, a1, q2, a2 in EVERYDAY:
        rec = {"conversations": turns(q1, a1, q2, a2)}
        if rng.random() < 0.5:
            rec["system"] = SYSTEMS[0]
        records.append(rec)
    for q1, a1, q2, a2 in STUDY_EN:
        records.append({"conversations": turns(q1, a1, q2, a2), "system": SYSTEMS[3]})
    for miles in (3, 13.1):
        records.append(
            {
                "conversations": turns(
                    f"How many kilometers is {fmt(miles)} miles?",
                    f"One mile is about 1.609 km, so {fmt(miles)} miles is about {fmt(miles * 1.609344)} km.",
                    "And how many miles is a 10 km run?",
                    "10 km divided by 1.609 is about 6.21 miles.",
                )
            }
        )
    records.append(
        {
            "conversations": turns(
                "How do I boil an egg so the yolk is still soft?",
                "Bring water to a boil, lower the egg in gently, and cook it for 6 to 7 minutes. "
                "Then put it in cold water for a minute so it stops cooking.",
                "And for a hard-boiled egg?",
                "Cook it for about 10 to 12 minutes, then cool it the same way.",
            )
        }
    )
    rng.shuffle(records)
    return records


# --------------------------------------------------------------------------- output

DATASET_INFO = {
    "identity": {"file_name": "identity.json"},
    "triage_train": {"file_name": "triage_train.json"},
    "triage_test": {"file_name": "triage_test.json"},
    "sharegpt_demo": {
        "file_name": "sharegpt_demo.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
    },
    "dpo_zh_demo": {  # written by scripts/gen_pref_demo.py (.jsonl: kept out of the tiny tokenizer's corpus)
        "file_name": "dpo_zh_demo.jsonl",
        "ranking": True,
        "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
    },
    "pt_zh_demo": {"file_name": "pt_zh_demo.txt"},  # written by scripts/gen_pt_demo.py (stage pt)
    "kto_zh_demo": {  # written by scripts/gen_kto_demo.py (stage kto), registered as LLaMA-Factory's kto_en_demo
        "file_name": "kto_zh_demo.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    },
}


def write_json(name: str, obj: object) -> None:
    path = DATA_DIR / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def check_triage(train: list[dict], test: list[dict]) -> None:
    for label, phrases in PHRASES.items():
        for phrase in phrases:
            text = f"我家孩子{phrase}" if label == "C" else phrase
            assert label_from_keywords(text) == label, (label, phrase)
    for rec in train + test:
        assert label_from_keywords(rec["input"]) == rec["output"], rec
        assert len(rec["input"].replace("\n", "")) <= 120, rec["input"]
    assert not {r["input"] for r in train} & {r["input"] for r in test}


def main() -> None:
    import argparse

    global DATA_DIR  # write_json writes here

    ap = argparse.ArgumentParser(description="Write the bundled demo data (deterministic).")
    ap.add_argument("--out", type=Path, default=DATA_DIR)
    ap.add_argument("--triage-train", type=int, default=N_TRIAGE_TRAIN)
    a = ap.parse_args()
    DATA_DIR = a.out
    rng = random.Random(SEED)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    identity = make_identity()
    train, test = make_triage(rng, a.triage_train, 102)
    check_triage(train, test)
    sharegpt = make_sharegpt(rng)
    write_json("identity.json", identity)
    write_json("triage_train.json", train)
    write_json("triage_test.json", test)
    write_json("sharegpt_demo.json", sharegpt)
    write_json("dataset_info.json", DATASET_INFO)

    zh = sum(any("\u4e00" <= ch <= "\u9fff" for ch in r["instruction"] + r["input"]) for r in identity)
    print(
        f"identity.json      {len(identity)} records ({zh} Chinese questions, {len(identity) - zh} English)"
    )
    for name, split in (("triage_train.json", train), ("triage_test.json", test)):
        dist = " ".join(f"{k}={v}" for k, v in sorted(Counter(r["output"] for r in split).items()))
        longest = max(len(r["input"].replace("\n", "")) for r in split)
        print(f"{name:18} {len(split)} records  labels: {dist}  longest dialogue: {longest} chars")
    with_system = sum("system" in r for r in sharegpt)
    rounds = dict(sorted(Counter(len(r["conversations"]) // 2 for r in sharegpt).items()))
    print(f"sharegpt_demo.json {len(sharegpt)} records ({with_system} with system; rounds {rounds})")
    print("train/test overlap: 0 identical dialogues (checked)")


if __name__ == "__main__":
    main()
