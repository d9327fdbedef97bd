      *----------------------------------------------------------------
      * COPYBOOK:  ESCROWRC
      * TITLE:     ESCROW ITEM RECORD  (DD ESCITEMS, 120 BYTES, FB)
      *
      * ONE RECORD PER TAX OR INSURANCE BILL THAT THE SERVICER PAYS
      * OUT OF A BORROWER'S ESCROW ACCOUNT.  A LOAN WITH ESCROW USUALLY
      * HAS TWO TO FOUR ITEMS (E.G. COUNTY TAX + HAZARD INSURANCE).
      * FILE IS SORTED BY ER-LOAN-NUMBER, ER-ITEM-SEQ.
      * READ BY LONES1 (ANNUAL ESCROW ANALYSIS) TO PROJECT THE NEXT
      * TWELVE MONTHS OF DISBURSEMENTS.
      *
      * ER-INSTALLMENT-AMOUNT IS ONE BILL; ER-FREQUENCY SAYS HOW MANY
      * BILLS A YEAR (A=1, S=2, Q=4, M=12).  ER-NEXT-DUE-DATE IS THE
      * NEXT DATE THE BILL MUST BE PAID TO THE PAYEE.
      *----------------------------------------------------------------
       01  ESCROW-ITEM-RECORD.
           05  ER-LOAN-NUMBER              PIC X(10).
           05  ER-ITEM-SEQ                 PIC 9(02).
           05  ER-ITEM-TYPE                PIC X(02).
               88  ER-COUNTY-TAX               VALUE 'CT'.
               88  ER-CITY-TAX                 VALUE 'MT'.
               88  ER-SCHOOL-TAX               VALUE 'ST'.
               88  ER-HAZARD-INS               VALUE 'HI'.
               88  ER-FLOOD-INS                VALUE 'FI'.
               88  ER-MORTGAGE-INS             VALUE 'MI'.
               88  ER-TAX-ITEM                 VALUE 'CT' 'MT' 'ST'.
               88  ER-INSURANCE-ITEM           VALUE 'HI' 'FI' 'MI'.
           05  ER-PAYEE-ID                 PIC X(08).
           05  ER-PAYEE-NAME               PIC X(30).
           05  ER-PARCEL-OR-POLICY         PIC X(20).
           05  ER-FREQUENCY                PIC X(01).
               88  ER-FREQ-ANNUAL              VALUE 'A'.
               88  ER-FREQ-SEMIANNUAL          VALUE 'S'.
               88  ER-FREQ-QUARTERLY           VALUE 'Q'.
               88  ER-FREQ-MONTHLY             VALUE 'M'.
           05  ER-INSTALLMENT-AMOUNT       PIC S9(7)V99  COMP-3.
           05  ER-NEXT-DUE-DATE            PIC 9(08).
           05  ER-LAST-PAID-DATE           PIC 9(08).
           05  ER-LAST-PAID-AMOUNT         PIC S9(7)V99  COMP-3.
           05  ER-ITEM-STATUS              PIC X(01).
               88  ER-ITEM-ACTIVE              VALUE 'A'.
               88  ER-ITEM-INACTIVE            VALUE 'I'.
           05  FILLER                      PIC X(20).
