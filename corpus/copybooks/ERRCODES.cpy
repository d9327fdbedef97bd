      *----------------------------------------------------------------
      * COPYBOOK:  ERRCODES
      * TITLE:     LOAN SERVICING EXCEPTION CODES AND MESSAGES
      *
      * SHARED BY THE BATCH PROGRAMS THAT REJECT OR FLAG INPUT.
      * A PROGRAM SETS ONE OF THE ERR- CONDITION NAMES TO TRUE, THEN
      * SEARCHES ERR-TABLE-ENTRY FOR ERR-CODE TO GET THE SEVERITY AND
      * THE PRINTED MESSAGE TEXT FOR ITS EXCEPTION REPORT.
      *
      * CODE RANGES:
      *   E1XX / W1XX  DAILY PAYMENTS            (LONPF2)
      *   E2XX         NEW LOAN BOARDING          (LONIN1)
      *   E3XX         PAYOFF QUOTES              (LONPO1)
      *   E9XX         GENERAL / FILE / BALANCING (ALL)
      * SEVERITY:  R = REJECTED, RECORD NOT PROCESSED
      *            W = WARNING, RECORD PROCESSED BUT REPORTED
      *
      * WHEN ADDING A CODE: ADD THE 88-LEVEL, ADD THE TABLE ENTRY IN
      * CODE ORDER, AND RAISE THE OCCURS COUNT AND ERR-TABLE-SIZE.
      *----------------------------------------------------------------
       01  ERR-WORK-AREA.
           05  ERR-CODE                    PIC X(04).
               88  ERR-NO-ERROR                VALUE SPACES.
      *        --- DAILY PAYMENTS (LONPF2) ---
               88  ERR-LOAN-NOT-FOUND          VALUE 'E101'.
               88  ERR-LOAN-CLOSED             VALUE 'E102'.
               88  ERR-LOAN-ON-HOLD            VALUE 'E103'.
               88  ERR-INVALID-AMOUNT          VALUE 'E104'.
               88  ERR-INVALID-PMT-DATE        VALUE 'E105'.
               88  ERR-EXCEEDS-PAYOFF          VALUE 'E106'.
               88  ERR-INVALID-PMT-TYPE        VALUE 'E107'.
               88  ERR-POSSIBLE-DUP            VALUE 'E108'.
               88  ERR-PARTIAL-TO-SUSP         VALUE 'W109'.
               88  ERR-NO-ESCROW-ACCT          VALUE 'E110'.
      *        --- NEW LOAN BOARDING (LONIN1) ---
               88  ERR-DUP-LOAN-NUMBER         VALUE 'E201'.
               88  ERR-INVALID-RATE            VALUE 'E202'.
               88  ERR-INVALID-TERM            VALUE 'E203'.
               88  ERR-INVALID-NOTE-DATE       VALUE 'E204'.
               88  ERR-MISSING-BORROWER        VALUE 'E205'.
               88  ERR-INVALID-PRODUCT         VALUE 'E206'.
               88  ERR-INVALID-LOAN-AMT        VALUE 'E207'.
      *        --- PAYOFF QUOTES (LONPO1) ---
               88  ERR-PO-LOAN-NOT-FOUND       VALUE 'E301'.
               88  ERR-PO-LOAN-CLOSED          VALUE 'E302'.
               88  ERR-PO-BAD-GOOD-THRU        VALUE 'E303'.
      *        --- GENERAL ---
               88  ERR-FILE-IO                 VALUE 'E901'.
               88  ERR-OUT-OF-BALANCE          VALUE 'E902'.
           05  ERR-SEVERITY                PIC X(01).
               88  ERR-SEV-REJECT              VALUE 'R'.
               88  ERR-SEV-WARNING             VALUE 'W'.
           05  ERR-MESSAGE-TEXT            PIC X(40).
           05  ERR-TABLE-SIZE              PIC S9(4) COMP VALUE 22.
      *
       01  ERR-MESSAGE-DATA.
           05  FILLER  PIC X(05)  VALUE 'E101R'.
           05  FILLER  PIC X(40)  VALUE
               'LOAN NUMBER NOT ON LOAN MASTER'.
           05  FILLER  PIC X(05)  VALUE 'E102R'.
           05  FILLER  PIC X(40)  VALUE
               'LOAN IS PAID IN FULL OR CHARGED OFF'.
           05  FILLER  PIC X(05)  VALUE 'E103R'.
           05  FILLER  PIC X(40)  VALUE
               'LOAN ON BANKRUPTCY/FORECLOSURE HOLD'.
           05  FILLER  PIC X(05)  VALUE 'E104R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYMENT AMOUNT ZERO OR NOT NUMERIC'.
           05  FILLER  PIC X(05)  VALUE 'E105R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYMENT DATE INVALID OR IN THE FUTURE'.
           05  FILLER  PIC X(05)  VALUE 'E106R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYMENT EXCEEDS PAYOFF - REFER TO LONPO1'.
           05  FILLER  PIC X(05)  VALUE 'E107R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYMENT TYPE IS NOT R, P OR E'.
           05  FILLER  PIC X(05)  VALUE 'E108R'.
           05  FILLER  PIC X(40)  VALUE
               'POSSIBLE DUPLICATE OF LAST PAYMENT'.
           05  FILLER  PIC X(05)  VALUE 'W109W'.
           05  FILLER  PIC X(40)  VALUE
               'PARTIAL PAYMENT HELD IN SUSPENSE'.
           05  FILLER  PIC X(05)  VALUE 'E110R'.
           05  FILLER  PIC X(40)  VALUE
               'ESCROW PAYMENT ON A NON-ESCROW LOAN'.
           05  FILLER  PIC X(05)  VALUE 'E201R'.
           05  FILLER  PIC X(40)  VALUE
               'LOAN NUMBER ALREADY ON LOAN MASTER'.
           05  FILLER  PIC X(05)  VALUE 'E202R'.
           05  FILLER  PIC X(40)  VALUE
               'INTEREST RATE NOT 0.5 TO 20 PERCENT'.
           05  FILLER  PIC X(05)  VALUE 'E203R'.
           05  FILLER  PIC X(40)  VALUE
               'TERM NOT 60 TO 360 MONTHS'.
           05  FILLER  PIC X(05)  VALUE 'E204R'.
           05  FILLER  PIC X(40)  VALUE
               'NOTE DATE INVALID'.
           05  FILLER  PIC X(05)  VALUE 'E205R'.
           05  FILLER  PIC X(40)  VALUE
               'BORROWER NAME OR ADDRESS MISSING'.
           05  FILLER  PIC X(05)  VALUE 'E206R'.
           05  FILLER  PIC X(40)  VALUE
               'PRODUCT CODE NOT F30, F15 OR HEL'.
           05  FILLER  PIC X(05)  VALUE 'E207R'.
           05  FILLER  PIC X(40)  VALUE
               'LOAN AMOUNT ZERO OR NOT NUMERIC'.
           05  FILLER  PIC X(05)  VALUE 'E301R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYOFF: LOAN NOT ON LOAN MASTER'.
           05  FILLER  PIC X(05)  VALUE 'E302R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYOFF: LOAN ALREADY PAID OR CLOSED'.
           05  FILLER  PIC X(05)  VALUE 'E303R'.
           05  FILLER  PIC X(40)  VALUE
               'PAYOFF: GOOD-THROUGH DATE NOT ALLOWED'.
           05  FILLER  PIC X(05)  VALUE 'E901R'.
           05  FILLER  PIC X(40)  VALUE
               'FILE I/O ERROR - SEE SYSOUT'.
           05  FILLER  PIC X(05)  VALUE 'E902R'.
           05  FILLER  PIC X(40)  VALUE
               'CONTROL TOTALS OUT OF BALANCE'.
       01  ERR-MESSAGE-TABLE REDEFINES ERR-MESSAGE-DATA.
           05  ERR-TABLE-ENTRY  OCCURS 22 TIMES
                                INDEXED BY ERR-IDX.
               10  ERR-TBL-CODE            PIC X(04).
               10  ERR-TBL-SEVERITY        PIC X(01).
               10  ERR-TBL-MESSAGE         PIC X(40).
